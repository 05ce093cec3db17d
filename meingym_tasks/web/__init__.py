"""The HTTP API and the /admin/jobs dashboard (FastAPI, Jinja2, a little plain JavaScript).

``create_app(settings)`` builds the ASGI app; ``meingym-tasks web`` serves it
with uvicorn. Importing this package connects to nothing.
"""

from __future__ import annotations

from meingym_tasks.web.app import create_app
from meingym_tasks.web.config import WebSettings

__all__ = ["WebSettings", "create_app"]
