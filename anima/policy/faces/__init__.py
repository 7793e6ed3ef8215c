"""Face analysis for the consent gate: find every face in a picture and describe its identity.

Two backends behind one interface (:class:`FaceBackend`), chosen with :func:`load_backend`:

- ``dlib`` (default, offline, bundled through ``dlib-bin`` and ``face-recognition-models``):
  HOG detector, dlib's CNN detector when HOG finds nothing (``dlib:cnn``: on every picture),
  5-point alignment, 128-D descriptor, Euclidean distance, same person below 0.6.
- ``insightface:PACK`` (production): a local insightface pack such as ``buffalo_l`` (SCRFD +
  ArcFace), cosine distance; see :mod:`anima.policy.faces.insightface_backend` for installing one.

Built for a gate that refuses any face it cannot verify, so ``analyze`` tries hard to find faces:
it reports every face, searches the picture turned by 90, 180 and 270 degrees as well (a face on
its side or upside down is still found), and upsamples so that faces of about 20 px are found and
reported with their small ``size``.
"""

from anima.policy.faces.base import DetectedFace, FaceBackend, FaceBackendError, load_backend

__all__ = ["DetectedFace", "FaceBackend", "FaceBackendError", "load_backend"]
