"""The Python API: :class:`Anima` and its namespaces. The CLI and the server are thin layers over it."""

from anima.api.core import Anima
from anima.scan.engine import MAX_WORKERS as MAX_SCAN_WORKERS

__all__ = ["MAX_SCAN_WORKERS", "Anima"]
