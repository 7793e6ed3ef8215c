"""Export a saved detector's network to ONNX beside its weights, for verification without torch::

    python -m anima.detect.export anima/weights/anima-detector

:meth:`~anima.detect.classifier.SyntheticVideoDetector.save` exports on its own; this is for a
folder saved without ``onnx`` installed, or by an older Anima. Only a CNN detector (v1) has a
network to export: a trace detector (the shipped one since v2) is scored with numpy as saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from anima.detect import runtime


def export_onnx(folder: Path) -> Path:
    """Write ``folder/model.onnx`` from ``folder``'s torch weights; returns its path."""
    from anima.detect.classifier import SyntheticVideoDetector
    from anima.errors import BadInput

    folder = Path(folder)
    path = folder / runtime.ONNX_NAME
    detector = SyntheticVideoDetector.load(folder)
    if not isinstance(detector, SyntheticVideoDetector):
        raise BadInput(f"{folder}: a trace detector has no network to export (verify scores it as saved)")
    detector.export_onnx(path, runtime.weights_sha256(folder))
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or [str(runtime.DEFAULT_DETECTOR)]:
        print(export_onnx(Path(name)))
