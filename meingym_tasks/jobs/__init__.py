"""The jobs and the Python way in.

``meingym_tasks.jobs.tasks`` declares the jobs (importing it registers them on
their queues); the helpers here schedule them, read results and manage the
registry. The task functions are part of the API: calling one enqueues it.
"""

from meingym_tasks.jobs.client import (
    cancel_job,
    counts,
    dead_letters,
    get_job,
    job_result,
    list_jobs,
    purge,
    queue_overview,
    retry_job,
    schedule_actions_update,
    schedule_user_processing,
    schedule_welcome_email,
    trigger,
    validate_job_id,
    wait_for_result,
)
from meingym_tasks.jobs.tasks import process_user_data, send_welcome_email, update_all_actions

__all__ = [
    "cancel_job",
    "counts",
    "dead_letters",
    "get_job",
    "job_result",
    "list_jobs",
    "process_user_data",
    "purge",
    "queue_overview",
    "retry_job",
    "schedule_actions_update",
    "schedule_user_processing",
    "schedule_welcome_email",
    "send_welcome_email",
    "trigger",
    "update_all_actions",
    "validate_job_id",
    "wait_for_result",
]
