"""The Python API: :class:`Anima` and its namespaces. The CLI and the server are thin layers over it."""

from anima.api.core import Anima

__all__ = ["Anima"]
