"""The job running in this thread, for code that reports progress without being handed the task."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: huey's Task of the job running in the current worker thread (None outside a job).
current_task: ContextVar[Any] = ContextVar("meingym_current_task", default=None)
