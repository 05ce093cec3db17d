"""The names of queues and jobs: the one place that spells them.

Everything else (task registration, CLI choices, Redis keys, docs) refers to
these constants, so renaming a job is a one-line change.
"""

from __future__ import annotations

ACTIONS_QUEUE = "actions-processing"
USERS_QUEUE = "users-processing"
QUEUES = (ACTIONS_QUEUE, USERS_QUEUE)

UPDATE_ALL_ACTIONS = "update-all-actions"
PROCESS_USER_DATA = "process-user-data"
SEND_WELCOME_EMAIL = "send-welcome-email"
JOBS = (UPDATE_ALL_ACTIONS, PROCESS_USER_DATA, SEND_WELCOME_EMAIL)

#: Which queue runs each public job.
JOB_QUEUE = {
    UPDATE_ALL_ACTIONS: ACTIONS_QUEUE,
    PROCESS_USER_DATA: USERS_QUEUE,
    SEND_WELCOME_EMAIL: USERS_QUEUE,
}

#: Jobs that take a ``user_id`` argument.
USER_JOBS = (PROCESS_USER_DATA, SEND_WELCOME_EMAIL)

#: Short names accepted by ``meingym-tasks worker``.
QUEUE_ALIASES = {"actions": ACTIONS_QUEUE, "users": USERS_QUEUE}

# Internal jobs: the pieces of a run and the housekeeping, not triggered by users.
UPDATE_ACTIONS_BATCH = "update-all-actions.batch"
UPDATE_ACTIONS_FINISH = "update-all-actions.finish"
NIGHTLY_UPDATE = "nightly-update-all-actions"
PRUNE_RESULTS = "prune-results"
