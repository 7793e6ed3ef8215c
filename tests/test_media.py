from __future__ import annotations

import shutil
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from containers import CONTAINERS, encode
from PIL import Image

from anima import media
from anima.errors import MediaError


def test_write_then_read_round_trip(tmp_path: Path, astronaut_frames: np.ndarray) -> None:
    path = tmp_path / "out.mp4"
    assert media.write_video(path, astronaut_frames[:10], fps=Fraction(30000, 1001), crf=18) == 10
    video = media.read_video(path)
    assert video.num_frames == 10
    assert video.size == (256, 256)
    assert abs(float(video.fps) - 29.97) < 0.01
    error = np.abs(video.frames.astype(int) - astronaut_frames[:10]).mean()
    assert error < 4  # CRF 18 is close to lossless
    info = media.probe_video(path)
    assert (info.width, info.height, info.codec) == (256, 256, "h264")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = np.zeros((3, 33, 47, 3), np.uint8)
    media.write_video(tmp_path / "odd.mp4", frames, fps=24)
    assert media.read_video(tmp_path / "odd.mp4").size == (48, 34)


def _zero_frame_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 64
        container.start_encoding()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not a video at all " * 50), "not a readable video"),
        (_zero_frame_mp4, "no decodable frames|no video stream"),
    ],
    ids=["missing", "empty", "not-media", "zero-frames"],
)
def test_bad_videos_raise_one_clear_error(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(MediaError, match=message) as info:
        media.read_video(path)
    assert "\n" not in str(info.value)


def test_absurd_dimensions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (9000, 20)).save(path)
    with pytest.raises(MediaError, match="outside"):
        media.read_image(path)
    with pytest.raises(MediaError, match="outside"):
        media.write_video(tmp_path / "tiny.mp4", np.zeros((2, 8, 8, 3), np.uint8), fps=24)


def test_unsupported_container_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"unsupported file type .\.avi."):
        media.mime_type(tmp_path / "clip.avi")
    with pytest.raises(MediaError, match=r"must be an \.mp4"):
        media.write_video(tmp_path / "clip.webm", np.zeros((2, 64, 64, 3), np.uint8), fps=24)


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "final.mp4"
    with pytest.raises(RuntimeError), media.atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("encoder died")
    assert list(tmp_path.iterdir()) == []
    with media.atomic_output(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["final.mp4"]


# ---------------------------------------------------------------- what verify and scan read


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, astronaut_frames: np.ndarray) -> dict[str, Path]:
    """The 24-frame astronaut clip in every container of :data:`containers.CONTAINERS`."""
    folder = tmp_path_factory.mktemp("containers")
    return {name: encode(astronaut_frames, folder, name) for name in CONTAINERS}


@pytest.mark.parametrize("name", CONTAINERS)
def test_every_container_is_read_by_its_content(
    encoded: dict[str, Path], astronaut_frames: np.ndarray, tmp_path: Path, name: str
) -> None:
    mime = CONTAINERS[name][1]
    info = media.probe(encoded[name])
    assert (info.mime, info.width, info.height, info.num_frames, info.is_still) == (mime, 256, 256, 24, False)
    frames, total = media.sample_frames(encoded[name], 5)
    assert total == 24 and len(frames) == 5 and frames[0].shape == (256, 256, 3)
    assert np.abs(frames[-1].astype(int) - astronaut_frames[-1]).mean() < 6
    disguised = tmp_path / "upload.mp4"  # a suffix that lies: the content decides
    shutil.copyfile(encoded[name], disguised)
    assert media.probe(disguised) == info
    assert media.content_type(disguised) == mime


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_a_gif_or_webp_of_one_frame_is_a_still(
    tmp_path: Path, astronaut_frames: np.ndarray, fmt: str
) -> None:
    path = tmp_path / f"one.{fmt.lower()}"
    Image.fromarray(astronaut_frames[0]).save(path, format=fmt)
    info = media.probe(path)
    assert info.is_still and info.num_frames == 1
    frames, total = media.sample_frames(path, 5)
    assert total == 1 and len(frames) == 1 and frames[0].shape == (256, 256, 3)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("reupload.webm", b""),
        ("clip.gif", b""),
        ("clip.mp4", b""),
        ("no-suffix", b""),
        ("reupload.webm", b"\x1a\x45\xdf\xa3"),  # Matroska's magic, then noise
        ("clip.gif", b"GIF89a"),
        ("clip.webp", b"RIFF\0\0\0\0WEBP"),
        ("clip.avi", b"RIFF\0\0\0\0AVI "),
    ],
    ids=["webm", "gif", "mp4", "no-suffix", "webm-magic", "gif-magic", "webp-magic", "avi-magic"],
)
def test_content_of_no_readable_kind_is_one_clear_line(tmp_path: Path, name: str, head: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(head + np.random.default_rng(0).bytes(4096))
    expected = "not a readable video or picture" if not head else "not a readable|no video stream|outside"
    with pytest.raises(MediaError, match=expected) as info:
        media.sample_frames(path, 5)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def _no_decoding(path: Path, wanted: object = None) -> None:
    raise AssertionError("frames were decoded before the limits were checked")


def test_a_gif_of_thousands_of_frames_on_a_huge_screen_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2000 frames of 16x16 pixels (124 kB) on an 8192x8192 logical screen: each would decode to a
    whole 200 MB canvas."""
    path = tmp_path / "bomb.gif"
    frames = [Image.new("RGB", (16, 16), (i % 256, i // 256, 7)) for i in range(2000)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", 8192, 8192)  # the logical screen descriptor
    path.write_bytes(bytes(data))
    monkeypatch.setattr(media, "_decode", _no_decoding)
    with pytest.raises(MediaError, match="2000 frames of 8192x8192 is over the limit"):
        media.sample_frames(path, 8)
    data[6:10] = struct.pack("<HH", 9000, 9000)
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"outside 16\.\.8192"):
        media.sample_frames(path, 8)


@pytest.mark.parametrize("name", CONTAINERS)
def test_frame_and_pixel_limits_hold_for_every_container(
    encoded: dict[str, Path], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(media, "_decode", _no_decoding)
    monkeypatch.setattr(media, "MAX_FRAMES", 23)
    with pytest.raises(MediaError, match="more than 23 frames"):
        media.sample_frames(encoded[name], 8)
    monkeypatch.setattr(media, "MAX_FRAMES", 24)
    monkeypatch.setattr(media, "MAX_VIDEO_PIXELS", 24 * 256 * 256 - 1)
    if CONTAINERS[name][1] in media.ANIMATION_TYPES:  # whole canvases from a few bytes each
        with pytest.raises(MediaError, match="over the limit"):
            media.probe(encoded[name])
    else:
        assert media.probe(encoded[name]).num_frames == 24


# ---------------------------------------------------------------- one threaded decode per file

EARLY_CLOSES = """
import sys
from pathlib import Path
from anima import media
assert media._decoding_threads() == "AUTO"
path = Path(sys.argv[1])
for round in range(int(sys.argv[2])):
    for index, _ in media._decode(path, {round % 9}):  # a frame-threaded decoder closed early
        pass
    frames = media.iter_frames(path)
    next(frames)
    frames.close()  # a generator abandoned after one frame
print("closed", flush=True)
"""


def test_a_threaded_decoder_closed_early_many_times_never_hangs(tmp_path: Path) -> None:
    """The hang that once made decoding single-threaded: PyAV's Python log callback made FFmpeg's
    frame threads wait for the GIL while the closing thread held it, joining them."""
    import subprocess
    import sys

    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    media.write_video(path, rng.integers(0, 256, (40, 240, 320, 3), dtype=np.uint8), fps=24, crf=30)
    done = subprocess.run(
        [sys.executable, "-c", EARLY_CLOSES, str(path), "150"], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0 and done.stdout == "closed\n", done.stderr[-2000:]


def test_a_python_log_callback_turns_frame_threads_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert media._decoding_threads() == "AUTO"
    monkeypatch.setattr(av.logging, "get_level", lambda: av.logging.ERROR)  # as torchvision sets it
    assert media._decoding_threads() == "SLICE"


@pytest.mark.parametrize("name", ["mov-h264", "webm-vp9", "gif", "webp"])
def test_sample_decodes_once_and_converts_only_the_sampled_frames(
    encoded: dict[str, Path], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    decodes = []
    decode = media._decode

    def counted(path: Path, wanted: object = None):
        decodes.append(wanted)
        yield from decode(path, wanted)

    monkeypatch.setattr(media, "_decode", counted)
    sampled = media.sample(encoded[name], 5)
    assert decodes == [{0, 6, 12, 17, 23}] and sampled.indices == [0, 6, 12, 17, 23]
    assert sampled.total == 24 and sampled.middle is sampled.frames[2]
    seen = list(decode(encoded[name], {1, 3}))
    assert [index for index, _ in seen][:4] == [0, 1, 2, 3]
    if name != "webp":  # a video decoder stops after the last frame wanted (Pillow skips the rest)
        assert len(seen) == 4
    assert [frame is None for _, frame in seen][:4] == [True, False, True, False]
