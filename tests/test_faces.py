"""Face analysis for the consent gate: real dlib on real, package-shipped photos, and the insightface
backend's loading and wiring with small ONNX models exported here under a real pack's file names."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import dlib
import insightface
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from anima.errors import BadInput
from anima.policy.faces import DetectedFace, FaceBackend, FaceBackendError, load_backend
from anima.policy.faces.insightface_backend import detector_sizes
from anima.policy.faces.search import Candidate, distinct, rotate, unrotate, unrotate_box

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(INSIGHTFACE_IMAGES / name).convert("RGB"))


def _gray(image: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)


def _tilted(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """Head and shoulders (320 px) of skimage's astronaut: small enough to keep dlib quick."""
    return np.ascontiguousarray(data.astronaut()[0:320, 60:380])


@pytest.fixture(scope="module")
def backend() -> FaceBackend:
    return load_backend("dlib")


@pytest.fixture(scope="module")
def friends(backend: FaceBackend) -> list[DetectedFace]:
    """The six people in insightface's group photo, at its full size (faces ~110 px)."""
    return backend.analyze(_photo("t1.jpg"))


@pytest.fixture(scope="module")
def collins(backend: FaceBackend, astronaut: np.ndarray) -> DetectedFace:
    (face,) = backend.analyze(astronaut)
    return face


# --- the rotation search's geometry, checked against numpy's own rotation -----------------------------


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_points_and_boxes_map_back_from_each_rotation(rotation: int) -> None:
    image = np.arange(7 * 5 * 3, dtype=np.int64).reshape(7, 5, 3)
    turned = rotate(image, rotation)
    for y, x in np.ndindex(turned.shape[:2]):
        ((ox, oy),) = np.rint(unrotate(np.array([[x + 0.5, y + 0.5]]), rotation, image.shape) - 0.5).astype(
            int
        )
        assert (image[oy, ox] == turned[y, x]).all()
    marked = np.zeros((7, 5), np.uint8)
    marked[1:4, 2:5] = 1
    rows, cols = np.nonzero(rotate(marked, rotation))
    box = unrotate_box((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1), rotation, marked.shape)
    assert box == (2, 1, 5, 4)


def test_one_face_found_in_several_rotations_is_reported_once() -> None:
    same = [Candidate(r, (10.0, 10.0, 50.0, 50.0 + r / 90), 1.0, r, rank=(1.0,)) for r in (0, 90, 180, 270)]
    best = Candidate(180, (11.0, 11.0, 51.0, 51.0), 0.5, "best ranked", rank=(2.0,))
    other = Candidate(0, (45.0, 45.0, 60.0, 60.0), 0.2, "small face overlapping the first", rank=(0.2,))
    assert [c.found for c in distinct([*same, other])] == [0, "small face overlapping the first"]
    assert [c.found for c in distinct([*same, best, other])] == [
        "best ranked",
        "small face overlapping the first",
    ]


def test_large_pictures_get_a_larger_insightface_detector_pass() -> None:
    assert detector_sizes((512, 512, 3)) == [(128, 128), (640, 640)]
    assert detector_sizes((886, 1280, 3)) == [(128, 128), (640, 640), (1280, 1280)]


# --- dlib on real photos --------------------------------------------------------------------------------


def test_astronaut_is_one_described_face(backend: FaceBackend) -> None:
    (face,) = backend.analyze(data.astronaut())
    left, top, right, bottom = face.box
    assert (left, top) == pytest.approx((171, 79), abs=4) and face.size == pytest.approx(94, abs=6)
    assert face.landmarks.shape == (5, 2)
    assert ((face.landmarks >= (left, top)) & (face.landmarks <= (right, bottom))).all()
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    assert face.rotation == 0 and face.detection_score > 0.5 and face.sharpness > 100
    assert backend.name == "dlib" and backend.metric == "euclidean" and backend.match_threshold == 0.6


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda im: im[:, ::-1], id="mirror"),
        pytest.param(lambda im: _scaled(im, 0.5), id="half-size"),
        pytest.param(lambda im: _scaled(im, 1.5), id="1.5x"),
        pytest.param(lambda im: _tilted(im, 10), id="tilted-10deg"),
        pytest.param(_gray, id="grayscale"),
    ],
)
def test_same_person_across_transformations(backend, astronaut, collins, variant) -> None:
    (face,) = backend.analyze(np.ascontiguousarray(variant(astronaut)))
    assert backend.distance(collins.embedding, face.embedding) < backend.match_threshold


@pytest.mark.parametrize(("turns", "rotation"), [(2, 180), (1, 270), (3, 90)])
def test_sideways_and_upside_down_faces_are_found(backend, astronaut, collins, turns, rotation) -> None:
    turned = np.ascontiguousarray(np.rot90(astronaut, turns))
    (face,) = backend.analyze(turned)
    assert face.rotation == rotation  # the turn that makes the picture upright again
    assert face.box == unrotate_box(collins.box, rotation, turned.shape)
    assert backend.distance(collins.embedding, face.embedding) < 1e-6


def test_upside_down_landmarks_are_in_the_original_pictures_pixels(backend, astronaut, collins) -> None:
    (face,) = backend.analyze(np.ascontiguousarray(astronaut[::-1, ::-1]))
    height, width = astronaut.shape[:2]
    assert face.landmarks == pytest.approx(np.array([width - 1, height - 1]) - collins.landmarks)


def test_different_people_are_apart(backend, collins, friends) -> None:
    (hanks,) = backend.analyze(_photo("Tom_Hanks_54745.png"))
    others = [hanks, *friends]
    for i, face in enumerate(others):
        assert backend.distance(collins.embedding, face.embedding) > backend.match_threshold
        for other in others[i + 1 :]:
            assert backend.distance(face.embedding, other.embedding) > backend.match_threshold


def test_group_photo_reports_every_face(friends: list[DetectedFace]) -> None:
    faces = friends
    assert len(faces) == 6
    assert [f.size for f in faces] == sorted((f.size for f in faces), reverse=True)
    centres = np.array([((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces])
    assert min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]) > 80


def test_weak_detections_the_cnn_confirms_are_kept(backend: FaceBackend) -> None:
    """At half size one of the six (looking down) scores 0.05 with HOG; the CNN confirms her."""
    assert len(backend.analyze(_scaled(_photo("t1.jpg"), 0.5))) == 6


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda im: _scaled(im, 0.5), id="half-size"),
        pytest.param(
            lambda im: cv2.warpAffine(im, cv2.getRotationMatrix2D((256, 256), 8, 1), (512, 512)), id="8deg"
        ),
    ],
)
def test_false_alarms_are_dropped(backend: FaceBackend, variant) -> None:
    """HOG weakly "finds" a face in the astronaut's hand in these; the CNN does not confirm it."""
    image = variant(data.astronaut())
    (face,) = backend.analyze(image)
    assert face.box[3] < image.shape[0] / 2  # her face, in the upper half; her hand is lower


def test_tiny_face_is_found_and_reported_small(backend: FaceBackend, collins: DetectedFace) -> None:
    tiny = cv2.resize(data.astronaut(), (137, 137), interpolation=cv2.INTER_AREA)  # face ~24 px across
    (face,) = backend.analyze(tiny)
    assert 16 <= face.size <= 32
    assert face.box[0] == pytest.approx(171 * 137 / 512, abs=4)
    assert face.sharpness < collins.sharpness / 4


def test_picture_without_a_face_has_none(backend: FaceBackend) -> None:
    assert backend.analyze(_scaled(data.coffee(), 0.5)) == []


def test_cnn_finds_the_face_hog_misses(backend: FaceBackend, collins: DetectedFace) -> None:
    cameraman = np.repeat(
        cv2.resize(data.camera(), (256, 256), interpolation=cv2.INTER_AREA)[:, :, None], 3, 2
    )
    hog = dlib.get_frontal_face_detector()
    assert not any(len(hog(np.ascontiguousarray(np.rot90(cameraman, k)), 2)) for k in range(4))
    (face,) = backend.analyze(cameraman)
    assert face.box[0] == pytest.approx(89, abs=8) and face.size == pytest.approx(40, abs=8)
    assert backend.distance(collins.embedding, face.embedding) > backend.match_threshold


def test_of_the_cnns_detections_of_a_face_the_upright_one_is_kept(backend, astronaut, collins) -> None:
    """dlib's CNN also fires on the face turned by 90 degrees, where alignment fails; HOG's judgement of
    uprightness must pick the view in which the face is upright."""
    found = [
        c for r in (0, 90, 180, 270) for c in backend._cnn_faces(rotate(astronaut, r), r, astronaut.shape)
    ]
    assert len({c.rotation for c in found}) >= 2
    (kept,) = distinct(found)
    assert kept.rotation == 0
    assert backend.distance(collins.embedding, backend._describe(kept, astronaut.shape).embedding) < 0.1


def test_cnn_on_every_picture_shares_the_descriptor_space(backend: FaceBackend) -> None:
    thorough = load_backend("dlib:cnn", match_threshold=0.55)
    assert thorough.name == backend.name and thorough.match_threshold == 0.55
    hanks = _photo("Tom_Hanks_54745.png")
    (face,) = thorough.analyze(hanks)  # HOG and CNN both find him: one face
    (usual,) = backend.analyze(hanks)
    assert thorough.distance(face.embedding, usual.embedding) < 0.3


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32), np.zeros((0, 32, 3), np.uint8), "x"],
)
def test_not_an_rgb_image_is_bad_input(backend: FaceBackend, image: object) -> None:
    with pytest.raises(BadInput, match="face analysis needs"):
        backend.analyze(image)


def test_embeddings_from_different_backends_cannot_be_compared(backend: FaceBackend) -> None:
    with pytest.raises(BadInput, match="128-D and a 512-D"):
        backend.distance(np.zeros(128, np.float32), np.zeros(512, np.float32))


@pytest.mark.parametrize(
    ("name", "model_dir", "message"),
    [
        ("openface", None, "unknown face backend 'openface'"),
        ("dlib:fast", None, "unknown face backend"),
        ("dlib", "empty", "dlib model files missing in .*shape_predictor_5_face_landmarks.dat"),
        ("insightface", "empty", "insightface pack 'buffalo_l' not found: no .onnx files"),
        ("insightface:../x", "empty", "must be a folder name"),
    ],
)
def test_unusable_backends_fail_with_one_clear_line(tmp_path: Path, name, model_dir, message) -> None:
    with pytest.raises(FaceBackendError, match=message) as caught:
        load_backend(name, model_dir=tmp_path if model_dir else None)
    assert "\n" not in str(caught.value)


def test_insightface_default_folder_is_under_anima_home(home: Path) -> None:
    with pytest.raises(FaceBackendError, match=re.escape(str(home / "models" / "insightface" / "buffalo_l"))):
        load_backend("insightface:buffalo_l")


def test_threshold_must_be_a_distance() -> None:
    with pytest.raises(BadInput, match="match_threshold"):
        load_backend("dlib", match_threshold=0)


# --- insightface: loading and wiring with ONNX stand-ins for buffalo_l's two models --------------------


class _PatternDetector(torch.nn.Module):
    """SCRFD's 9-output contract (scores, boxes, 5-point landmarks for strides 8, 16, 32; two anchors
    per cell). It "detects" a 32 px cell (at detector input) whose top half is white and bottom half
    black: an orientation-dependent stand-in for a face, so only the right rotation finds it."""

    def forward(self, blob: torch.Tensor) -> tuple[torch.Tensor, ...]:
        lum = blob.mean(dim=1, keepdim=True)
        top = F.avg_pool2d(lum, kernel_size=(16, 32), stride=32)
        bottom = F.avg_pool2d(lum[:, :, 16:, :], kernel_size=(16, 32), stride=32)
        scores, boxes, points = [], [], []
        for stride in (8, 16, 32):
            cells = F.avg_pool2d(lum, stride) * 0  # one value per cell of this stride
            logit = 10 * (top - bottom - 1.5) if stride == 32 else cells - 20
            score = torch.sigmoid(logit).flatten().repeat_interleave(2).unsqueeze(1)
            scores.append(score)
            # distances from each cell's corner, in strides: the box is the cell itself
            boxes.append(score * 0 + torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
            points.append(
                score * 0 + torch.tensor([[0.3, 0.35, 0.7, 0.35, 0.5, 0.55, 0.35, 0.75, 0.65, 0.75]])
            )
        return (*scores, *boxes, *points)


class _Embedder(torch.nn.Module):
    """ArcFace's contract: a 1x3x112x112 face in, a 1x512 embedding out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.fc = torch.nn.Linear(8 * 14 * 14, 512)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(face).flatten(1))


def _export(module: torch.nn.Module, size: int, path: Path, outputs: list[str], dynamic: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input.1"],
            output_names=outputs,
            dynamic_axes={"input.1": dynamic, **{name: {0: "n"} for name in outputs}},
        )


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/buffalo_l`` holding det_10g.onnx (dynamic height and width, as the real one has) and
    w600k_r50.onnx."""
    root = tmp_path_factory.mktemp("insightface")
    pack = root / "buffalo_l"
    pack.mkdir()
    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32)]
    _export(_PatternDetector(), 640, pack / "det_10g.onnx", names, {2: "height", 3: "width"})
    _export(_Embedder(), 112, pack / "w600k_r50.onnx", ["fc1"], {0: "batch"})
    return root


def _pattern_picture(*corners: tuple[int, int]) -> np.ndarray:
    """A 320 px grey picture with 16 px top-white/bottom-black patterns (32 px at detector input)."""
    picture = np.full((320, 320, 3), 128, np.uint8)
    for left, top in corners:
        picture[top : top + 8, left : left + 16] = 255
        picture[top + 8 : top + 16, left : left + 16] = 0
    return picture


def test_insightface_pack_is_loaded_through_insightfaces_router(pack_root: Path) -> None:
    backend = load_backend("insightface:buffalo_l", model_dir=pack_root)
    assert backend.name == "insightface:buffalo_l" and backend.metric == "cosine"
    assert backend.match_threshold == 0.60
    faces = backend.analyze(_pattern_picture((160, 96), (48, 224)))
    assert sorted(f.box for f in faces) == [(48, 224, 64, 240), (160, 96, 176, 112)]
    for face in faces:
        assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
        assert face.landmarks.shape == (5, 2) and face.rotation == 0
        left, top, right, bottom = face.box
        assert ((face.landmarks >= (left, top)) & (face.landmarks <= (right, bottom))).all()
        assert face.detection_score > 0.5 and face.sharpness > 0
    assert backend.distance(faces[0].embedding, faces[1].embedding) < 1e-6  # identical patterns
    assert backend.analyze(np.full((320, 320, 3), 128, np.uint8)) == []


def test_insightface_upside_down_pattern_is_found_by_the_rotation_search(pack_root: Path) -> None:
    backend = load_backend("insightface", model_dir=pack_root)
    (upright,) = backend.analyze(_pattern_picture((160, 96)))
    (face,) = backend.analyze(_pattern_picture((160, 96))[::-1, ::-1].copy())
    assert face.rotation == 180 and face.box == (320 - 176, 320 - 112, 320 - 160, 320 - 96)
    eyes, mouth = face.landmarks[:2, 1].mean(), face.landmarks[3:, 1].mean()
    assert eyes > mouth  # upside down: the eyes are below the mouth in the picture
    assert backend.distance(upright.embedding, face.embedding) < 1e-6


def test_insightface_pack_problems_are_one_clear_line(pack_root: Path, tmp_path: Path) -> None:
    detector_only = tmp_path / "buffalo_l"
    detector_only.mkdir()
    (detector_only / "det_10g.onnx").write_bytes((pack_root / "buffalo_l" / "det_10g.onnx").read_bytes())
    with pytest.raises(FaceBackendError, match="has no recognition"):
        load_backend("insightface:buffalo_l", model_dir=tmp_path)
    (detector_only / "w600k_r50.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(FaceBackendError, match="cannot load insightface pack") as caught:
        load_backend("insightface:buffalo_l", model_dir=tmp_path)
    assert "\n" not in str(caught.value)


def test_uncalibrated_insightface_pack_needs_a_threshold(pack_root: Path, tmp_path: Path) -> None:
    custom = tmp_path / "my_pack"
    custom.mkdir()
    for model in (pack_root / "buffalo_l").glob("*.onnx"):
        (custom / model.name).write_bytes(model.read_bytes())
    with pytest.raises(FaceBackendError, match="no calibrated threshold"):
        load_backend("insightface:my_pack", model_dir=tmp_path)
    assert load_backend("insightface:my_pack", model_dir=tmp_path, match_threshold=0.5).match_threshold == 0.5
