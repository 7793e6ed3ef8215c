"""Frames re-encoded into every container and codec ``anima verify`` reads, the way a re-upload to
a video site or a chat app would leave them (lossy, at the quality such sites keep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

FPS = 24

# name -> (file name, MIME type the content should be known as)
CONTAINERS = {
    "webm-vp9": ("clip.webm", "video/webm"),
    "webm-av1": ("clip-av1.webm", "video/webm"),
    "mkv-h264": ("clip.mkv", "video/x-matroska"),
    "mov-h264": ("clip.mov", "video/quicktime"),
    "avi-mpeg4": ("clip.avi", "video/x-msvideo"),
    "gif": ("clip.gif", "image/gif"),
    "webp": ("clip.webp", "image/webp"),
}


def _pyav(path: Path, frames: np.ndarray, fmt: str, codec: str, pix_fmt: str, **settings: Any) -> None:
    height, width = frames.shape[1:3]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = settings.pop("options", {})
        for name, value in settings.items():
            setattr(stream, name, value)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _gif(path: Path, frames: np.ndarray) -> None:
    """Pillow's GIF: an adaptive 256-colour palette per frame, as most GIF makers do."""
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=1000 // FPS, loop=0)


def encode(frames: np.ndarray, folder: Path, name: str) -> Path:
    """``frames`` (N, H, W, 3) RGB re-encoded as container ``name`` of :data:`CONTAINERS`."""
    path = folder / CONTAINERS[name][0]
    if name == "webm-vp9":
        _pyav(path, frames, "webm", "libvpx-vp9", "yuv420p", options={"crf": "30", "b": "0", "cpu-used": "4"})
    elif name == "webm-av1":
        _pyav(path, frames, "webm", "libsvtav1", "yuv420p", options={"crf": "30", "preset": "8"})
    elif name in ("mkv-h264", "mov-h264"):
        fmt = "matroska" if name == "mkv-h264" else "mov"
        _pyav(path, frames, fmt, "libx264", "yuv420p", options={"crf": "23"})
    elif name == "avi-mpeg4":
        _pyav(path, frames, "avi", "mpeg4", "yuv420p", bit_rate=2_000_000)
    elif name == "gif":
        _gif(path, frames)
    else:
        _pyav(path, frames, "webp", "libwebp_anim", "yuv420p", options={"quality": "80", "loop": "0"})
    return path
