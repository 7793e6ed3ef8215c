"""The Python API: :class:`Anima` and its namespaces. The CLI and the server are thin layers over it.

``Anima`` loads on first use, so that a command's options and ``anima --help`` are read without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anima._exports import lazy_exports
from anima.scan import MAX_WORKERS as MAX_SCAN_WORKERS

if TYPE_CHECKING:
    from anima.api.core import Anima

__all__ = ["MAX_SCAN_WORKERS", "Anima"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), {"Anima": "anima.api.core"})
