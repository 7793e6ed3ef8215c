"""Training the default model on puppets: ``anima train --config anima-puppets.toml``.

Three stages, each resumable from its last checkpoint (in ``work_dir``, outside the repository):

0. the VAE, on frames (L1 + a little MSE, a tiny KL);
1. images: reference frame + target pose (+ limb warp) -> target frame; trains the ReferenceNet, the
   denoiser's 2D part, the Pose Guider and the image encoder. v-prediction, loss on x0 weighted by
   min(SNR, 5) (min-SNR), timesteps up to ``max_timestep`` only (sampling starts from the noised
   warp, never from pure noise); half of the noisy inputs are the noised *warp*, as at sampling;
2. clips: the motion modules alone, on ``clip_frames``-frame windows.

Weights are averaged (EMA); sample grids (reference | pose | truth | model | warp) and the held-out
PSNR of model and warp land in ``work_dir/samples`` every ``sample_every`` steps, and a JSON line
per logged step in ``work_dir/train.log``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from anima.errors import BadInput
from anima.generate.models import pose_features_after_conv_in
from anima.generate.pipeline import AnimationPipeline
from anima.pose.render import render_pose
from anima.training.architecture import PuppetArchitecture, puppet_pipeline, puppet_vae
from anima.puppets import PuppetClip, sample_clip
from anima.generate.warp import warp_sequence

MIN_SNR_GAMMA = 5.0
STAGES = ("vae", "image", "motion")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; read from TOML (``[architecture]`` holds :class:`PuppetArchitecture`)."""

    output: Path
    work_dir: Path
    architecture: PuppetArchitecture = field(default_factory=PuppetArchitecture)
    train_clips: int = 600
    clip_length: int = 24
    first_seed: int = 0
    validation_seeds: tuple[int, ...] = (900_001, 900_002, 900_003, 900_004)
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_crop: int = 64
    vae_lr: float = 1e-3
    image_steps: int = 3000
    image_batch: int = 8
    image_lr: float = 3e-4
    motion_steps: int = 500
    motion_batch: int = 2
    clip_frames: int = 8
    motion_lr: float = 3e-4
    max_timestep: int = 700
    warp_input_share: float = 0.5
    ema_decay: float = 0.995
    checkpoint_every: int = 100
    sample_every: int = 250
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("train_clips", "clip_length", "vae_batch", "vae_crop", "image_batch",
                    "motion_batch", "clip_frames", "max_timestep", "checkpoint_every", "sample_every",
                    "log_every")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BadInput(f"training config: `{name}` must be a positive integer, got {value!r}")
        arch = self.architecture
        checks = (
            (self.clip_frames <= min(self.clip_length, arch.motion_frames),
             f"`clip_frames` ({self.clip_frames}) must fit in `clip_length` and `motion_frames`"),
            (self.vae_crop <= arch.size, f"`vae_crop` ({self.vae_crop}) must be at most `size`"),
            (bool(self.validation_seeds), "`validation_seeds` must name at least one clip"),
            (self.max_timestep <= 1000, "`max_timestep` must be at most 1000"),
        )  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise BadInput(f"training config: {message}")

    @classmethod
    def from_toml(cls, path: Path) -> TrainConfig:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadInput(f"{path}: cannot read the training config ({exc})") from None
        base = Path(path).resolve().parent
        arch_raw = raw.pop("architecture", {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known) + sorted(
            set(arch_raw) - {f.name for f in fields(PuppetArchitecture)}
        )
        if unknown:
            raise BadInput(f"{path}: unknown settings {', '.join(unknown)}")
        for key in ("output", "work_dir"):
            if key not in raw:
                raise BadInput(f"{path}: `{key}` is required")
            raw[key] = (base / Path(raw[key]).expanduser()).resolve()
        arch = PuppetArchitecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch_raw.items()})
        if "validation_seeds" in raw:
            raw["validation_seeds"] = tuple(raw["validation_seeds"])
        try:
            return cls(architecture=arch, **raw)
        except TypeError as exc:
            raise BadInput(f"{path}: {exc}") from None


class PuppetFrames:
    """The training clips, rendered once (deterministic) and cached in ``work_dir``."""

    def __init__(self, config: TrainConfig, progress: Progress | None = None) -> None:
        size = config.architecture.size
        cache = (
            config.work_dir
            / f"clips-{config.first_seed}-{config.train_clips}x{config.clip_length}-{size}.npz"
        )
        if cache.is_file():
            data = np.load(cache)
            self.frames, self.keypoints = data["frames"], data["keypoints"]
            return
        task = progress.add_task("render puppets", total=config.train_clips, status="") if progress else None
        frames, keypoints = [], []
        for seed in range(config.first_seed, config.first_seed + config.train_clips):
            clip = sample_clip(seed, frames=config.clip_length, size=(size, size))
            frames.append(clip.frames)
            keypoints.append(clip.keypoints)
            if progress is not None:
                progress.advance(task)
        self.frames, self.keypoints = np.stack(frames), np.stack(keypoints)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, frames=self.frames, keypoints=self.keypoints)
        partial.replace(cache)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 or float -> (N, C, H, W) float in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return tensor / 255.0 if images.dtype == np.uint8 else tensor


def conditioning(reference: np.ndarray, reference_pose: np.ndarray, poses: np.ndarray) -> torch.Tensor:
    """The warp-guided Pose Guider's input for each target pose: (N, 7, H, W)."""
    height, width = reference.shape[:2]
    skeletons = np.stack([render_pose(pose, (width, height)) for pose in poses])
    images, coverage = warp_sequence(reference, reference_pose, poses)
    coverage = coverage[..., None]
    return torch.cat([_to_tensor(skeletons), _to_tensor(images), _to_tensor(coverage)], dim=1)


class EMA:
    """Exponential moving average of some parameters, swapped in for sampling and saving."""

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.parameters, self.decay = parameters, decay
        self.shadow = [p.detach().clone() for p in parameters]

    def update(self, step: int) -> None:
        # Warm-up: a short stage must not keep a large share of its starting weights.
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], 1 - decay)

    def copy_to_model(self) -> None:
        with torch.no_grad():
            for shadow, parameter in zip(self.shadow, self.parameters, strict=True):
                parameter.copy_(shadow)


class Checkpoint:
    """One stage's resumable state, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        return torch.load(self.path, weights_only=False) if self.path.is_file() else None

    def save(self, state: dict[str, Any]) -> None:
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.path)


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.arch = config.architecture
        config.work_dir.mkdir(parents=True, exist_ok=True)
        (config.work_dir / "samples").mkdir(exist_ok=True)
        self.log_path = config.work_dir / "train.log"
        self.rng = np.random.default_rng(config.seed)
        self.data: PuppetFrames | None = None
        self.pipe: AnimationPipeline | None = None

    # -- bookkeeping ---------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[status]}"),
            TimeRemainingColumn(),
        )

    def _loop(
        self,
        stage: str,
        total: int,
        modules: dict[str, torch.nn.Module],
        parameters: list[torch.nn.Parameter],
        lr: float,
        step_fn,
        progress: Progress,
        on_sample=None,
    ) -> None:
        """Run ``step_fn`` (returns the loss) to ``total`` steps, resuming and checkpointing."""
        checkpoint = Checkpoint(self.config.work_dir / f"{stage}.ckpt")
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
        ema = EMA(parameters, self.config.ema_decay)
        state = checkpoint.load()
        step = 0
        upstream = self._upstream(stage)
        if state is not None:
            if state.get("upstream", upstream) != upstream:
                raise BadInput(
                    f"{checkpoint.path} continues earlier stages of other lengths ({state['upstream']}, now "
                    f"{upstream}); delete it to retrain from there, or use another work_dir"
                )
            try:
                for name, module in modules.items():
                    module.load_state_dict(state["modules"][name])
            except (RuntimeError, KeyError) as exc:
                raise BadInput(
                    f"{checkpoint.path} holds another architecture ({exc.__class__.__name__}); "
                    "delete it or use another work_dir"
                ) from None
            optimizer.load_state_dict(state["optimizer"])
            ema.shadow = state["ema"]
            self.rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            step = state["step"]
        if step >= total:
            ema.copy_to_model()
            return
        task = progress.add_task(f"stage {stage}", total=total, completed=step, status="")
        warmup = min(100, total // 10 + 1)
        started, losses = time.time(), []
        while step < total:
            for group in optimizer.param_groups:  # linear warm-up, then cosine to 10%
                progress_share = max(0.0, (step - warmup) / max(1, total - warmup))
                cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_share))
                group["lr"] = lr * min(1.0, (step + 1) / warmup) * cosine
            loss = step_fn()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            ema.update(step)
            step += 1
            losses.append(float(loss.detach()))
            progress.update(task, completed=step, status=f"loss {np.mean(losses[-50:]):.4f}")
            if step % self.config.log_every == 0:
                self.log(
                    {
                        "stage": stage,
                        "step": step,
                        "loss": float(np.mean(losses[-self.config.log_every :])),
                        "lr": optimizer.param_groups[0]["lr"],
                        "seconds": round(time.time() - started, 1),
                    }
                )
            if step % self.config.checkpoint_every == 0 or step == total:
                checkpoint.save(
                    {
                        "modules": {name: module.state_dict() for name, module in modules.items()},
                        "optimizer": optimizer.state_dict(),
                        "ema": ema.shadow,
                        "rng": self.rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(),
                        "step": step,
                        "upstream": upstream,
                    }
                )
            if on_sample is not None and (step % self.config.sample_every == 0 or step == total):
                live = [p.detach().clone() for p in parameters]
                ema.copy_to_model()
                on_sample(step)
                with torch.no_grad():
                    for parameter, value in zip(parameters, live, strict=True):
                        parameter.copy_(value)
        ema.copy_to_model()
        progress.remove_task(task)

    def _upstream(self, stage: str) -> dict[str, int]:
        """The lengths of the stages a stage builds on: resuming on top of changed ones would mix
        weights trained against different inputs."""
        config = self.config
        lengths = {"vae": config.vae_steps, "image": config.image_steps}
        return {name: lengths[name] for name in STAGES[: STAGES.index(stage)]}

    # -- stage 0: the VAE ----------------------------------------------------------------------
    def train_vae(self, progress: Progress) -> torch.nn.Module:
        config, data = self.config, self.data
        vae = puppet_vae(self.arch)
        crop = config.vae_crop

        def step() -> torch.Tensor:
            clips = self.rng.integers(0, len(data.frames), config.vae_batch)
            frames = self.rng.integers(0, data.frames.shape[1], config.vae_batch)
            size = data.frames.shape[2]
            tops, lefts = self.rng.integers(0, size - crop + 1, (2, config.vae_batch))
            batch = np.stack(
                [
                    data.frames[c, f, y : y + crop, x : x + crop]
                    for c, f, y, x in zip(clips, frames, tops, lefts, strict=True)
                ]
            )
            images = _to_tensor(batch) * 2 - 1
            posterior = vae.encode(images).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample
            error = reconstruction - images
            return error.abs().mean() + 0.5 * error.pow(2).mean() + 1e-6 * posterior.kl().mean()

        vae.train()
        self._loop(
            "vae", config.vae_steps, {"vae": vae}, list(vae.parameters()), config.vae_lr, step, progress
        )
        vae.eval().requires_grad_(False)
        # Scale latents to unit variance, as SD's VAE does with its 0.18215.
        sample = _to_tensor(data.frames[:: max(1, len(data.frames) // 32), 0]) * 2 - 1
        with torch.no_grad():
            std = float(vae.encode(sample).latent_dist.mean.std())
        vae.register_to_config(scaling_factor=1.0 / std)
        return vae

    # -- stages 1 and 2 ------------------------------------------------------------------------
    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        with torch.no_grad():
            return vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor

    def _image_tokens(self, references: np.ndarray) -> torch.Tensor:
        pixels = self.pipe.feature_extractor(images=list(references), return_tensors="pt").pixel_values
        return self.pipe.image_encoder(pixels).image_embeds[:, None, :]

    def _denoising_loss(
        self, references: np.ndarray, reference_poses: np.ndarray, poses: np.ndarray, targets: np.ndarray
    ) -> torch.Tensor:
        """Loss for ``len(references)`` videos of ``poses.shape[1]`` frames each (poses (B, F, 18, 3),
        targets (B, F, H, W, 3))."""
        pipe, config = self.pipe, self.config
        batch, frames = poses.shape[:2]
        cond = torch.cat(
            [conditioning(r, rp, p) for r, rp, p in zip(references, reference_poses, poses, strict=True)]
        )  # (B*F, 7, H, W)
        target_latents = self._encode(_to_tensor(targets.reshape(-1, *targets.shape[2:])))
        warp_latents = self._encode(cond[:, 3:6])
        tokens = self._image_tokens(references)
        reference_latents = self._encode(_to_tensor(references))

        scheduler = pipe.scheduler
        t = torch.from_numpy(self.rng.integers(0, config.max_timestep, batch)).long()
        t_frames = t.repeat_interleave(frames)
        noise = torch.randn_like(target_latents)
        from_warp = torch.from_numpy(self.rng.random(batch) < config.warp_input_share).repeat_interleave(
            frames
        )
        start = torch.where(from_warp[:, None, None, None], warp_latents, target_latents)
        noisy = scheduler.add_noise(start, noise, t_frames)
        alpha = scheduler.alphas_cumprod[t_frames].view(-1, 1, 1, 1)

        pipe.reference_bank.clear()
        pipe.reference_unet(
            reference_latents, torch.zeros(batch), encoder_hidden_states=tokens, return_dict=False
        )
        features = pipe.pose_guider(cond, warp_latents if pipe.pose_guider.config.latent_channels else None)
        video = noisy.view(batch, frames, *noisy.shape[1:]).transpose(1, 2)  # (B, C, F, h, w)
        with pose_features_after_conv_in(pipe.denoising_unet, features):
            velocity = pipe.denoising_unet(
                video, t, encoder_hidden_states=tokens.repeat_interleave(frames, 0), return_dict=False
            )[0]
        pipe.reference_bank.clear()
        velocity = velocity.transpose(1, 2).reshape(noisy.shape)
        predicted = alpha.sqrt() * noisy - (1 - alpha).sqrt() * velocity
        snr = alpha / (1 - alpha)
        weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / MIN_SNR_GAMMA
        return (weight * (predicted - target_latents).pow(2)).mean()

    def _pairs(self, batch: int, frames: int) -> tuple[np.ndarray, ...]:
        """Random (reference, reference pose, target poses, target frames) from the training clips;
        the reference is the front-facing first frame most of the time, as at generation."""
        data = self.data
        length = data.frames.shape[1]
        clips = self.rng.integers(0, len(data.frames), batch)
        ref_index = np.where(self.rng.random(batch) < 0.8, 0, self.rng.integers(0, length, batch))
        starts = self.rng.integers(0, length - frames + 1, batch)
        windows = starts[:, None] + np.arange(frames)
        return (
            data.frames[clips, ref_index],
            data.keypoints[clips, ref_index],
            data.keypoints[clips[:, None], windows],
            data.frames[clips[:, None], windows],
        )

    def train_image(self, progress: Progress) -> None:
        pipe, config = self.pipe, self.config
        modules = {
            "reference_unet": pipe.reference_unet,
            "denoising_unet": pipe.denoising_unet,
            "pose_guider": pipe.pose_guider,
            "image_encoder": pipe.image_encoder,
        }
        for module in modules.values():
            module.train().requires_grad_(True)
        for name, parameter in pipe.denoising_unet.named_parameters():
            parameter.requires_grad_("motion_modules" not in name)
        parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        self._loop(
            "image",
            config.image_steps,
            modules,
            parameters,
            config.image_lr,
            lambda: self._denoising_loss(*self._pairs(config.image_batch, 1)),
            progress,
            on_sample=lambda step: self.sample("image", step),
        )

    def train_motion(self, progress: Progress) -> None:
        pipe, config = self.pipe, self.config
        for module in (pipe.reference_unet, pipe.pose_guider, pipe.image_encoder, pipe.denoising_unet):
            module.requires_grad_(False)
        parameters = []
        for name, parameter in pipe.denoising_unet.named_parameters():
            if "motion_modules" in name:
                parameter.requires_grad_(True)
                parameters.append(parameter)
        self._loop(
            "motion",
            config.motion_steps,
            {"denoising_unet": pipe.denoising_unet},
            parameters,
            config.motion_lr,
            lambda: self._denoising_loss(*self._pairs(config.motion_batch, config.clip_frames)),
            progress,
            on_sample=lambda step: self.sample("motion", step),
        )

    # -- looking at samples --------------------------------------------------------------------
    def validation_clips(self) -> Iterator[PuppetClip]:
        size = self.arch.size
        for seed in self.config.validation_seeds:
            yield sample_clip(seed, frames=self.config.clip_length, size=(size, size))

    def sample(self, stage: str, step: int) -> None:
        """A grid of held-out clips (reference | pose | truth | model | warp, 4 frames each) and the
        model's and the warp's PSNR on them."""
        from PIL import Image

        from anima.training.quality import comparison_grid, psnr

        pipe = self.pipe
        for module in (pipe.reference_unet, pipe.denoising_unet, pipe.pose_guider, pipe.image_encoder):
            module.eval()
        rows, model_scores, warp_scores = [], [], []
        frames = np.arange(0, self.config.clip_length, max(1, self.config.clip_length // 8))[:8]
        for clip in self.validation_clips():
            output = generate_clip(pipe, clip, frames, generator=torch.Generator().manual_seed(0))
            warped = warp_sequence(clip.frames[0], clip.keypoints[0], clip.keypoints[frames])[0]
            model_scores.append(psnr(output, clip.frames[frames]))
            warp_scores.append(psnr(warped, clip.frames[frames]))
            rows.append((clip, frames, output, warped))
        grid = comparison_grid(rows[:4], columns=4)
        Image.fromarray(grid).save(self.config.work_dir / "samples" / f"{stage}-{step:05d}.png")
        self.log({"stage": stage, "step": step, "val_psnr": float(np.mean(model_scores)),
                  "val_warp_psnr": float(np.mean(warp_scores))})  # fmt: skip
        for module in (pipe.reference_unet, pipe.denoising_unet, pipe.pose_guider, pipe.image_encoder):
            module.train()

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> Path:
        config = self.config
        with self._progress() as progress:
            self.data = PuppetFrames(config, progress)
            vae = self.train_vae(progress)
            self.pipe = puppet_pipeline(self.arch, vae, seed=config.seed)
            self.train_image(progress)
            self.train_motion(progress)
        self.save()
        return config.output

    def save(self) -> None:
        """The pipeline (EMA weights) as a diffusers folder, written beside and renamed into place."""
        output = self.config.output
        partial = output.with_name(output.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Sample windows as long as the clips the motion modules learned from.
        self.pipe.register_to_config(default_context_frames=self.config.clip_frames)
        self.pipe.save_pretrained(partial, safe_serialization=True)
        # The settings it was trained with, without this machine's paths.
        settings = {**asdict(self.config), "output": output.name}
        del settings["work_dir"]
        (partial / "training.json").write_text(json.dumps(settings, indent=2, default=str))
        if output.exists():
            for card in output.glob("*.md"):  # hand-written model cards stay
                shutil.copy2(card, partial / card.name)
            previous = output.with_name(output.name + ".old")
            shutil.rmtree(previous, ignore_errors=True)
            output.replace(previous)
            partial.replace(output)
            shutil.rmtree(previous)
        else:
            partial.replace(output)


def generate_clip(
    pipe: AnimationPipeline,
    clip: PuppetClip,
    frames: np.ndarray,
    strength: float | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """The model's rendering of ``clip``'s poses at ``frames`` from its first frame: (F, H, W, 3) uint8."""
    height, width = clip.frames.shape[1:3]
    skeletons = [render_pose(clip.keypoints[i], (width, height)) for i in frames]
    output = pipe(
        clip.frames[0],
        skeletons,
        reference_pose=clip.keypoints[0],
        poses=clip.keypoints[frames],
        strength=strength,
        num_inference_steps=steps,
        generator=generator,
        output_type="np",
    ).frames[0]
    return (np.asarray(output) * 255).round().astype(np.uint8)


def train(config: TrainConfig) -> Path:
    """Train (or resume) all stages and write the model folder; returns its path."""
    torch.manual_seed(config.seed)
    return Trainer(config).run()
