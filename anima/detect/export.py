"""Export a saved detector's network to ONNX beside its weights, for verification without torch::

    python -m anima.detect.export anima/weights/anima-detector

:meth:`~anima.detect.classifier.SyntheticVideoDetector.save` exports on its own; this is for a
folder saved without ``onnx`` installed, or by an older Anima.
"""

from __future__ import annotations

import sys
from pathlib import Path

from anima.detect import runtime


def export_onnx(folder: Path) -> Path:
    """Write ``folder/model.onnx`` from ``folder``'s torch weights; returns its path."""
    from anima.detect.classifier import SyntheticVideoDetector

    folder = Path(folder)
    path = folder / runtime.ONNX_NAME
    SyntheticVideoDetector.load(folder).export_onnx(path, runtime.weights_sha256(folder))
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or [str(runtime.DEFAULT_DETECTOR)]:
        print(export_onnx(Path(name)))
