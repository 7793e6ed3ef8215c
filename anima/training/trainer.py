"""Training the default model on puppets: ``anima train --config anima-puppets.toml``.

Three stages, each resumable from its last checkpoint (in ``work_dir``, outside the repository):

0. the VAE, on frames (L1 + a little MSE, a tiny KL);
1. images: reference frame + target pose (+ limb warp) -> target frame; trains the ReferenceNet, the
   denoiser's 2D part, the Pose Guider and the image encoder. v-prediction, loss on x0 weighted by
   min(SNR, 5) (min-SNR), timesteps up to ``max_timestep`` only (sampling starts from the noised
   warp, never from pure noise); half of the noisy inputs are the noised *warp*, as at sampling;
2. clips: the motion modules alone, on ``clip_frames``-frame windows.

Weights are averaged (EMA, :func:`moving_average`); the learning rate warms up, then falls to a
tenth (:func:`learning_rate_schedule`). Sample grids (reference | pose | truth | model | warp) and
the held-out PSNR of model and warp land in ``work_dir/samples`` every ``sample_every`` steps, and a
JSON line per logged step in ``work_dir/train.log``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel, compute_snr
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from anima.errors import BadInput
from anima.generate.models import pose_features_after_conv_in
from anima.generate.pipeline import AnimationPipeline
from anima.generate.warp import warp_sequence
from anima.pose.render import render_pose
from anima.puppets import PuppetClip, sample_clip
from anima.training.architecture import puppet_pipeline, puppet_vae
from anima.training.config import TrainConfig

MIN_SNR_GAMMA = 5.0
STAGES = ("vae", "image", "motion")


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


def moving_average(parameters: list[torch.nn.Parameter], decay: float) -> EMAModel:
    """The average of ``parameters`` that sampling and saving use.

    Its warm-up — decay ``min(decay, n / (9 + n))`` at the ``n``-th update, the first a plain copy
    (diffusers' default, and the hand-rolled EMA's before it) — keeps none of a stage's starting
    weights: a constant 0.995 kept 29% of stage 2's zero-initialised motion outputs after 250 steps.
    At the end of a stage it averages roughly the last ``n / 9`` steps (the decay reaches 0.995 only
    after 1,790 updates).
    """
    return EMAModel(parameters, decay=decay, use_ema_warmup=False, foreach=True)


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, lr: float, total: int, done: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over the first tenth (at most 100 steps), then cosine down to 10% of ``lr``;
    positioned after ``done`` steps, so a resumed stage follows the schedule of today's ``total``
    and ``lr`` even when they changed since its checkpoint."""
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    warmup = min(100, total // 10 + 1)
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, warmup, total, min_lr_rate=0.1, last_epoch=done - 1
    )


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
        ema = moving_average(parameters, self.config.ema_decay)
        upstream = self._upstream(stage)
        step = self._resume(checkpoint, upstream, modules, optimizer, ema)
        schedule = learning_rate_schedule(optimizer, lr, total, done=step)
        if step >= total:
            ema.copy_to(parameters)
            return
        task = progress.add_task(f"stage {stage}", total=total, completed=step, status="")
        started, losses = time.time(), []
        while step < total:
            loss = step_fn()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            rate = optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
            ema.step(parameters)
            step += 1
            losses.append(float(loss.detach()))
            progress.update(task, completed=step, status=f"loss {np.mean(losses[-50:]):.4f}")
            if step % self.config.log_every == 0:
                self.log(
                    {
                        "stage": stage,
                        "step": step,
                        "loss": float(np.mean(losses[-self.config.log_every :])),
                        "lr": rate,
                        "seconds": round(time.time() - started, 1),
                    }
                )
            if step % self.config.checkpoint_every == 0 or step == total:
                checkpoint.save(
                    {
                        "modules": {name: module.state_dict() for name, module in modules.items()},
                        "optimizer": optimizer.state_dict(),
                        "ema": ema.state_dict(),
                        "rng": self.rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(),
                        "step": step,
                        "upstream": upstream,
                    }
                )
            if on_sample is not None and (step % self.config.sample_every == 0 or step == total):
                ema.store(parameters)
                ema.copy_to(parameters)
                on_sample(step)
                ema.restore(parameters)
        ema.copy_to(parameters)
        progress.remove_task(task)

    def _resume(
        self,
        checkpoint: Checkpoint,
        upstream: dict[str, int],
        modules: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer,
        ema: EMAModel,
    ) -> int:
        """Restore a stage from its checkpoint, if any; returns the steps it has done."""
        state = checkpoint.load()
        if state is None:
            return 0
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
        step = state["step"]
        saved = state["ema"]
        if isinstance(saved, list):  # written by the hand-rolled EMA: the averaged weights alone
            saved = {"shadow_params": saved, "optimization_step": step}
        # The average's progress from the checkpoint; its settings (decay) from today's config.
        ema.load_state_dict({key: saved[key] for key in ("shadow_params", "optimization_step")})
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        return step

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
        snr = compute_snr(scheduler, t_frames).view(-1, 1, 1, 1)

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
        # Min-SNR-5 on the x0 error, over 5. For a noised target this is diffusers' v-prediction
        # weighting min(SNR, 5) / (SNR + 1) of the velocity error, over 5 (the squared x0 error is
        # 1 - alpha times the velocity's); the loss stays on x0 because a noised *warp* has no
        # velocity target, only the frame to reach.
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
