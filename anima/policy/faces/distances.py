"""The two ways backends compare identity descriptors."""

from __future__ import annotations

import numpy as np

from anima.errors import BadInput


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two embeddings as float vectors of one size; different sizes come from different backends."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise BadInput(f"cannot compare a {a.size}-D and a {b.size}-D face embedding (different backends?)")
    return a, b


def euclidean(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance (dlib's metric)."""
    a, b = _pair(a, b)
    return float(np.linalg.norm(a - b))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity (ArcFace's metric): 0 for the same direction, 1 for orthogonal, at most 2."""
    a, b = _pair(a, b)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0:
        raise BadInput("cannot compare an all-zero face embedding")
    return 1.0 - float(a @ b) / norms
