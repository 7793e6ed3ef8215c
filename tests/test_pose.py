"""Pose tools: rendering as the public models were trained, readers, alignment, motions, extraction."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from skimage import data

from anima.errors import BadInput, MediaError
from anima.pose import (
    COLORS,
    LIMBS,
    MOTIONS,
    DWPoseExtractor,
    PoseExtractionError,
    PoseSequence,
    align_to_reference,
    builtin_motion,
    ensure_mediapipe_env,
    extract_pose,
    extract_pose_from_image,
    load_pose,
    read_pose_json,
    read_skeleton_video,
    render_pose,
    render_sequence,
    render_video,
)
from anima.pose.blazepose import blazepose_to_openpose
from anima.pose.dwpose import DETECTOR_FILE, POSE_FILE

FIXTURES = Path(__file__).parent / "fixtures" / "pose"
NECK, R_SHOULDER, R_ELBOW, L_SHOULDER, R_HIP, L_HIP = 1, 2, 3, 5, 8, 11
NOSE = 0
NO_FRAMES = "no video stream|no decodable frames"


def _skeleton(points: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """An (18, 3) skeleton with only the given joints found."""
    skeleton = np.zeros((18, 3))
    for joint, value in points.items():
        skeleton[joint] = value
    return skeleton


def _bone_lengths(sequence: PoseSequence) -> np.ndarray:
    pixels = sequence.pixels()
    return np.stack(
        [np.linalg.norm(pixels[:, child] - pixels[:, parent], axis=-1) for parent, child in LIMBS], 1
    )


def _video_without_frames(path: Path) -> None:
    """An MP4 whose header is written but that holds no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- rendering ------------------------------------------------------------------------------------


def test_limb_gets_its_dimmed_colour_and_joints_their_full_colour() -> None:
    # Neck at (256, 153.6) px, right shoulder at (153.6, 153.6) px on a 512 x 512 canvas.
    canvas = render_pose(_skeleton({NECK: (0.5, 0.3, 1.0), R_SHOULDER: (0.3, 0.3, 1.0)}), (512, 512))
    assert canvas.shape == (512, 512, 3) and canvas.dtype == np.uint8
    neck_to_shoulder = tuple(int(c * 0.6) for c in COLORS[0])
    assert neck_to_shoulder == (153, 0, 0)
    assert tuple(canvas[153, 204]) == neck_to_shoulder  # the limb's midpoint
    assert tuple(canvas[153 + 3, 204]) == neck_to_shoulder  # inside the 4-pixel half-width
    assert tuple(canvas[153 + 6, 204]) == (0, 0, 0)  # outside it
    assert tuple(canvas[153, 256]) == COLORS[NECK] == (255, 85, 0)
    assert tuple(canvas[153, 153]) == COLORS[R_SHOULDER] == (255, 170, 0)
    assert set(map(tuple, canvas.reshape(-1, 3))) <= {(0, 0, 0), neck_to_shoulder, COLORS[1], COLORS[2]}


def test_low_confidence_limbs_and_joints_are_skipped() -> None:
    for weak in (0.2, 0.3):  # the line is "above 0.3", as the training detector drew
        canvas = render_pose(_skeleton({NECK: (0.5, 0.3, 1.0), R_SHOULDER: (0.3, 0.3, weak)}), (512, 512))
        assert tuple(canvas[153, 204]) == (0, 0, 0)
        assert tuple(canvas[153, 153]) == (0, 0, 0)
        assert tuple(canvas[153, 256]) == COLORS[NECK]


def test_stick_width_scales_with_the_canvas() -> None:
    skeleton = _skeleton({NECK: (0.5, 0.3, 1.0), R_SHOULDER: (0.3, 0.3, 1.0)})
    large = render_pose(skeleton, (1024, 1024))  # half-width 8 there
    assert tuple(large[307 + 7, 409]) == (153, 0, 0)
    assert tuple(large[307 + 11, 409]) == (0, 0, 0)


def test_render_video_round_trips_as_a_skeleton_video(tmp_path: Path) -> None:
    sequence = builtin_motion("wave", frames=6, fps=12, size=(128, 192))
    path = tmp_path / "skeleton.mp4"
    assert render_video(sequence, path) == 6
    video = read_skeleton_video(path)
    assert video.frames.shape == (6, 192, 128, 3)
    assert float(video.fps) == 12
    expected = render_sequence(sequence)
    assert np.abs(video.frames.astype(int) - expected).mean() < 3


def test_a_photo_video_is_not_taken_for_a_skeleton(clip: Path) -> None:
    with pytest.raises(MediaError, match="does not look like a rendered pose video") as error:
        read_skeleton_video(clip)
    _one_line(error)


# --- our format and the readers -------------------------------------------------------------------


def test_own_json_round_trip(tmp_path: Path) -> None:
    sequence = builtin_motion("dance", frames=5, fps=30, size=(320, 480))
    sequence.save(tmp_path / "pose.json")
    loaded = read_pose_json(tmp_path / "pose.json")
    assert (loaded.fps, loaded.size, loaded.num_frames) == (30.0, (320, 480), 5)
    assert np.allclose(loaded.keypoints, sequence.keypoints, atol=1e-6)
    assert PoseSequence.load(tmp_path / "pose.json").size == (320, 480)


def test_openpose_folder_keeps_the_main_person_in_natural_frame_order() -> None:
    sequence = read_pose_json(FIXTURES / "openpose_frames", canvas_size=(640, 480))
    assert (sequence.num_frames, sequence.size, sequence.fps) == (2, (640, 480), 24.0)
    first, second = sequence.keypoints
    assert np.allclose(first[NECK], (0.5, 150 / 480, 0.9))  # the large person, not the small one
    assert np.isclose(second[NECK, 0] - first[NECK, 0], 20 / 640)  # clip_10 comes after clip_2
    assert first[16, 2] == 0  # missing keypoints stay missing


def test_openpose_body25_list_with_canvas() -> None:
    sequence = read_pose_json(FIXTURES / "openpose_body25_list.json", fps=30)
    assert (sequence.num_frames, sequence.size, sequence.fps) == (2, (640, 480), 30.0)
    assert np.allclose(sequence.keypoints[0, R_HIP], (300 / 640, 270 / 480, 0.8))  # BODY_25's 9, not mid-hip
    assert np.allclose(sequence.keypoints[0, 17], (338 / 640, 96 / 480, 0.8))
    assert not sequence.keypoints[1, :, 2].any()  # a frame without people is an empty frame


def test_dwpose_frame() -> None:
    sequence = read_pose_json(FIXTURES / "dwpose_frame.json")
    assert (sequence.num_frames, sequence.size) == (1, (640, 480))
    skeleton = sequence.keypoints[0]
    assert np.allclose(skeleton[NECK], (0.5, 0.3125, 1.0))
    assert skeleton[13, 2] == 0  # subset -1: not found


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("openpose_no_people.json", "no people"),
        ("malformed.json", "malformed JSON"),
        ("openpose_mixed_canvas.json", "different canvas sizes"),
        ("openpose_frames", "canvas_width/canvas_height"),
        ("missing.json", "no such file"),
    ],
)
def test_pose_files_fail_with_one_clear_line(name: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as error:
        read_pose_json(FIXTURES / name)
    _one_line(error)


def test_unknown_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(BadInput, match="not a pose file") as error:
        read_pose_json(tmp_path / "other.json")
    _one_line(error)


# --- alignment ------------------------------------------------------------------------------------


def _reshaped(skeleton_pixels: np.ndarray, factors: np.ndarray, neck: tuple[float, float]) -> np.ndarray:
    """Another body: the same pose with each bone scaled by its factor, neck moved to ``neck``."""
    out = np.zeros_like(skeleton_pixels)
    out[NECK] = neck
    for (parent, child), factor in zip(LIMBS, factors, strict=True):
        out[child] = out[parent] + factor * (skeleton_pixels[child] - skeleton_pixels[parent])
    return out


def test_alignment_gives_reference_bone_lengths_and_neck() -> None:
    driving = builtin_motion("dance", frames=24, fps=24, size=(512, 512))
    factors = np.random.default_rng(0).uniform(0.6, 1.4, len(LIMBS))
    reference_pixels = _reshaped(driving.pixels()[3], factors, neck=(200.0, 150.0))
    reference = PoseSequence(
        np.concatenate([reference_pixels / (384, 512), np.ones((18, 1))], axis=1)[None], 24, 384, 512
    )
    aligned = align_to_reference(driving, reference)
    assert aligned.size == (384, 512) and aligned.num_frames == 24
    assert np.allclose(aligned.pixels()[0, NECK], (200, 150))
    assert np.allclose(_bone_lengths(aligned), _bone_lengths(reference)[0], atol=1e-6)
    # each bone keeps its driving direction
    for parent, child in LIMBS:
        before = driving.pixels()[:, child] - driving.pixels()[:, parent]
        after = aligned.pixels()[:, child] - aligned.pixels()[:, parent]
        cosine = (before * after).sum(-1) / np.linalg.norm(before, axis=-1) / np.linalg.norm(after, axis=-1)
        assert np.allclose(cosine, 1)


def test_alignment_scales_bones_the_reference_lacks_by_the_median_ratio() -> None:
    driving = builtin_motion("idle", frames=4, fps=24, size=(512, 512))
    reference = driving.keypoints[:1].copy()
    reference[0, :, :2] = 0.5 + (reference[0, :, :2] - 0.5) * 0.5  # half the size
    reference[0, [9, 10, 12, 13], 2] = 0  # knees and ankles cut off by the picture
    aligned = align_to_reference(driving, PoseSequence(reference, 24, 512, 512))
    assert np.allclose(_bone_lengths(aligned), _bone_lengths(driving) * 0.5)


def test_alignment_needs_a_reference_neck() -> None:
    driving = builtin_motion("idle", frames=2, fps=24, size=(256, 256))
    reference = driving.keypoints[:1].copy()
    reference[0, NECK, 2] = 0
    with pytest.raises(BadInput, match="no neck"):
        align_to_reference(driving, PoseSequence(reference, 24, 256, 256))


# --- built-in motions -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MOTIONS))
def test_builtin_motions_are_rigid_smooth_and_in_frame(name: str) -> None:
    sequence = builtin_motion(f"motion:{name}", frames=120, fps=24, size=(512, 768))
    assert sequence.keypoints.shape == (120, 18, 3) and sequence.visible.all()
    assert _bone_lengths(sequence).std(axis=0).max() < 1e-6
    assert (sequence.keypoints[..., :2] > 0).all() and (sequence.keypoints[..., :2] < 1).all()
    # Smooth: the second difference shrinks with the square of the step (a kink would only halve).
    fine, finer = (builtin_motion(name, frames=240, fps=fps, size=(512, 768)).pixels() for fps in (120, 240))
    jerk_fine = np.abs(np.diff(fine, 2, axis=0)).max()
    jerk_finer = np.abs(np.diff(finer, 2, axis=0)).max()
    assert jerk_fine < 1.0  # pixels per (1/120 s)^2
    assert jerk_fine / jerk_finer > 3.5


def test_unknown_motion_names_the_known_ones() -> None:
    with pytest.raises(BadInput, match=r"unknown motion 'moonwalk'.*dance, idle, walk, wave") as error:
        builtin_motion("moonwalk", frames=4, fps=24, size=(64, 64))
    _one_line(error)


# --- load_pose ------------------------------------------------------------------------------------


def test_load_pose_motion_json_and_skeleton_video(tmp_path: Path) -> None:
    motion = load_pose("motion:walk", (96, 128), num_frames=8, fps=12)
    assert motion.frames.shape == (8, 128, 96, 3) and motion.fps == 12
    assert motion.keypoints is not None and motion.keypoints.size == (96, 128)

    from_json = load_pose(str(FIXTURES / "openpose_body25_list.json"), (320, 240))
    assert from_json.frames.shape == (2, 240, 320, 3)
    assert not from_json.frames[1].any()  # the empty frame renders black

    render_video(builtin_motion("wave", frames=4, fps=24, size=(128, 192)), tmp_path / "skeleton.mp4")
    skeleton = load_pose(str(tmp_path / "skeleton.mp4"), (64, 96))
    assert skeleton.keypoints is None and skeleton.frames.shape == (4, 96, 64, 3)


def test_load_pose_aligns_to_a_reference() -> None:
    reference = builtin_motion("idle", frames=1, fps=24, size=(256, 384))
    loaded = load_pose("motion:dance", (256, 384), num_frames=3, reference=reference)
    assert loaded.keypoints is not None
    assert np.allclose(loaded.keypoints.pixels()[0, NECK], reference.pixels()[0, NECK])


def test_load_pose_errors_are_one_clear_line(tmp_path: Path) -> None:
    render_video(builtin_motion("wave", frames=2, fps=24, size=(128, 192)), tmp_path / "skeleton.mp4")
    _video_without_frames(tmp_path / "empty.mp4")
    cases = [
        ("motion:moonwalk", BadInput, "unknown motion"),
        (str(tmp_path / "skeleton.mp4"), BadInput, "aspect ratios differ"),
        (str(tmp_path / "empty.mp4"), MediaError, NO_FRAMES),
        (str(FIXTURES / "openpose_no_people.json"), BadInput, "no people"),
        (str(tmp_path / "nowhere.mp4"), BadInput, "no such file"),
    ]
    for spec, kind, message in cases:
        with pytest.raises(kind, match=message) as error:
            load_pose(spec, (128, 128))
        _one_line(error)


# --- extraction: MediaPipe BlazePose (real) and DWPose wiring ------------------------------------


def test_blazepose_landmarks_map_to_openpose() -> None:
    landmarks = np.zeros((1, 33, 3))
    landmarks[0, :, 0] = np.arange(33) / 100
    landmarks[0, :, 2] = 0.9
    landmarks[0, 12, 2] = 0.5
    keypoints = blazepose_to_openpose(landmarks)[0]
    assert np.isclose(keypoints[NECK, 0], (0.11 + 0.12) / 2) and keypoints[NECK, 2] == 0.5
    assert np.allclose(keypoints[[R_SHOULDER, L_SHOULDER, R_HIP, L_HIP, 14, 15, 16, 17], 0] * 100,
                       [12, 11, 24, 23, 5, 2, 8, 7])  # fmt: skip


@pytest.fixture(scope="session")
def mediapipe_env() -> Path:
    """The MediaPipe tool environment, built once per machine outside the repository."""
    tool_dir = Path.home() / ".cache" / "anima" / "mediapipe-0.10.21"
    try:
        ensure_mediapipe_env(tool_dir)
    except PoseExtractionError as exc:
        pytest.skip(f"MediaPipe tool environment cannot be built here: {exc}")
    return tool_dir


def test_mediapipe_finds_the_astronaut(mediapipe_env: Path) -> None:
    sequence = extract_pose_from_image(data.astronaut(), tool_dir=mediapipe_env)
    assert sequence.size == (512, 512) and sequence.num_frames == 1
    skeleton = sequence.keypoints[0]
    assert (skeleton[[NOSE, NECK, R_SHOULDER, L_SHOULDER, 14, 15], 2] > 0.9).all()
    hips_y = skeleton[[R_HIP, L_HIP], 1]
    assert skeleton[NOSE, 1] < skeleton[NECK, 1] < hips_y.min()
    assert skeleton[R_SHOULDER, 0] < skeleton[NECK, 0] < skeleton[L_SHOULDER, 0]  # she faces the camera


def test_load_pose_extracts_a_driving_video(mediapipe_env: Path, clip: Path) -> None:
    loaded = load_pose(str(clip), (256, 256), tool_dir=mediapipe_env)  # recognised as a driving video
    assert loaded.keypoints is not None and loaded.keypoints.num_frames == 24
    assert loaded.keypoints.visible[:, NECK].all()
    assert loaded.frames.shape == (24, 256, 256, 3)


# DWPose wiring, checked with tiny stand-ins exported under the real file names and tensor shapes.
FRAME_W, FRAME_H = 320, 240
PERSON_BOX = (100.0, 40.0, 180.0, 200.0)  # x0, y0, x1, y1 in frame pixels
SIMCC_PEAKS = [(288 + 40 * (k % 5) - 80, 200 + 30 * k) for k in range(17)]  # (x index, y index) per keypoint


def _detector_output() -> np.ndarray:
    """YOLOX's raw (1, 8400, 85) answer: the person box at one stride-32 anchor, a weaker overlapping
    duplicate, and a confident non-person elsewhere."""
    output = np.zeros((1, 8400, 85), np.float32)
    ratio = 2.0  # a 320 x 240 frame letterboxed into 640 x 640
    x0, y0, x1, y1 = (v * ratio for v in PERSON_BOX)
    centre, size = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), np.array([x1 - x0, y1 - y0])
    for offset, score in ((0, 0.9), (1, 0.6)):
        grid = np.array([centre[0] // 32 + offset, centre[1] // 32])
        anchor = 80 * 80 + 40 * 40 + int(grid[1]) * 20 + int(grid[0])
        output[0, anchor, :2] = centre / 32 - grid + (offset, 0)
        output[0, anchor, 2:4] = np.log(size / 32)
        output[0, anchor, 4:6] = (score, score)
    output[0, 10, 2:4] = np.log(4.0)
    output[0, 10, [4, 6]] = (0.99, 0.99)  # class 1: not a person
    return output


def _pose_outputs() -> tuple[np.ndarray, np.ndarray]:
    simcc_x = np.full((1, 133, 576), 0.01, np.float32)
    simcc_y = np.full((1, 133, 768), 0.01, np.float32)
    for keypoint, (x, y) in enumerate(SIMCC_PEAKS):
        score = 0.1 if keypoint == 15 else 0.9  # left ankle barely seen
        simcc_x[0, keypoint, x] = score
        simcc_y[0, keypoint, y] = score
    return simcc_x, simcc_y


@pytest.fixture
def dwpose_folder(tmp_path: Path) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")  # torch.onnx.export needs it
    torch = pytest.importorskip("torch")

    class Constant(torch.nn.Module):
        def __init__(self, *outputs: np.ndarray) -> None:
            super().__init__()
            self.outputs = [torch.from_numpy(output) for output in outputs]

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(output + 0 * image.mean() for output in self.outputs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Constant(_detector_output()), (torch.zeros(1, 3, 640, 640),), str(tmp_path / DETECTOR_FILE),
            input_names=["images"], output_names=["output"], dynamo=False,
        )  # fmt: skip
        torch.onnx.export(
            Constant(*_pose_outputs()), (torch.zeros(1, 3, 384, 288),), str(tmp_path / POSE_FILE),
            input_names=["input"], output_names=["simcc_x", "simcc_y"], dynamo=False,
        )  # fmt: skip
    return tmp_path


def test_dwpose_onnx_wiring(dwpose_folder: Path) -> None:
    extractor = DWPoseExtractor(dwpose_folder)
    assert extractor.detector_size == (640, 640) and extractor.pose_size == (288, 384)
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    assert np.allclose(extractor.detect_people(frame), [PERSON_BOX], atol=1e-3)

    sequence = extractor.extract([frame, frame], fps=25)
    assert sequence.size == (FRAME_W, FRAME_H) and sequence.num_frames == 2
    # The crop is the box padded by 1.25 and widened to 3:4, i.e. 150 x 200 px around (140, 120).
    coco = [(65 + x / 2 / 288 * 150, 20 + y / 2 / 384 * 200) for x, y in SIMCC_PEAKS]
    skeleton = sequence.keypoints[0]
    pixels = skeleton[:, :2] * (FRAME_W, FRAME_H)
    assert np.allclose(pixels[NOSE], coco[0]) and np.allclose(pixels[R_SHOULDER], coco[6])
    assert np.allclose(pixels[L_SHOULDER], coco[5]) and np.allclose(pixels[R_HIP], coco[12])
    assert np.allclose(pixels[NECK], (np.array(coco[5]) + coco[6]) / 2)
    assert np.allclose(pixels[14], coco[2]) and np.allclose(pixels[17], coco[3])
    assert skeleton[13, 2] == pytest.approx(0.1) and skeleton[NOSE, 2] == pytest.approx(0.9)


def test_dwpose_folder_must_hold_both_models(tmp_path: Path) -> None:
    (tmp_path / "yolox_l.onnx").write_bytes(b"")
    with pytest.raises(BadInput, match=r"lacks dw-ll_ucoco_384\.onnx") as error:
        DWPoseExtractor(tmp_path)
    _one_line(error)


def test_extraction_of_no_frames_fails_before_building_anything(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    _video_without_frames(empty)
    with pytest.raises(MediaError, match=NO_FRAMES) as error:
        load_pose(f"video:{empty}", (64, 64), tool_dir=tmp_path / "tool")
    _one_line(error)
    assert not (tmp_path / "tool").exists()
    with pytest.raises(MediaError, match="no frames"):
        extract_pose([], fps=24, tool_dir=tmp_path / "tool")
