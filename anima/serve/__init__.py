"""``anima serve``: a verify page for people, REST for tools, and the C2PA Soft Binding Resolution
API over the ledger. Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart)."""

from anima.serve.app import create_app, run
from anima.serve.settings import ServeSettings, load_token

__all__ = ["ServeSettings", "create_app", "load_token", "run"]
