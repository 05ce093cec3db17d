"""The jobs and the Python way in.

``meingym_tasks.jobs.tasks`` declares the jobs (:mod:`meingym_tasks.jobs.declare`;
importing it registers them on their queues); the helpers here enqueue them by
name, read results and manage the registry. The task functions are part of the
API: calling one (``process_user_data(7)``), its ``schedule()`` and its ``s()``
check the arguments against the declaration, then enqueue.
"""

from meingym_tasks.jobs.client import (
    cancel_job,
    consumers_alive,
    counts,
    dead_letters,
    enqueue,
    get_job,
    job_result,
    list_jobs,
    purge,
    queue_overview,
    retry_job,
    schedule_actions_update,
    schedule_user_processing,
    schedule_welcome_email,
    validate_job_id,
    wait_for_result,
)
from meingym_tasks.jobs.declare import ExistingRun, Job, JobSpec, job, public_jobs
from meingym_tasks.jobs.tasks import process_user_data, send_welcome_email, update_all_actions

__all__ = [
    "ExistingRun",
    "Job",
    "JobSpec",
    "cancel_job",
    "consumers_alive",
    "counts",
    "dead_letters",
    "enqueue",
    "get_job",
    "job",
    "job_result",
    "list_jobs",
    "process_user_data",
    "public_jobs",
    "purge",
    "queue_overview",
    "retry_job",
    "schedule_actions_update",
    "schedule_user_processing",
    "schedule_welcome_email",
    "send_welcome_email",
    "update_all_actions",
    "validate_job_id",
    "wait_for_result",
]
