"""The names of queues and jobs: the one place that spells them.

Everything else (task declarations, Redis keys, docs) refers to these
constants, so renaming a job is a one-line change. Which jobs exist, on which
queue, with which parameters, is declared beside each job's function
(:mod:`meingym_tasks.jobs.tasks`) and read from there.
"""

from __future__ import annotations

ACTIONS_QUEUE = "actions-processing"
USERS_QUEUE = "users-processing"
QUEUES = (ACTIONS_QUEUE, USERS_QUEUE)

UPDATE_ALL_ACTIONS = "update-all-actions"
PROCESS_USER_DATA = "process-user-data"
SEND_WELCOME_EMAIL = "send-welcome-email"

#: Short names accepted by ``meingym-tasks worker``.
QUEUE_ALIASES = {"actions": ACTIONS_QUEUE, "users": USERS_QUEUE}

# Internal jobs: the pieces of a run and the housekeeping, not triggered by users.
UPDATE_ACTIONS_BATCH = "update-all-actions.batch"
UPDATE_ACTIONS_FINISH = "update-all-actions.finish"
NIGHTLY_UPDATE = "nightly-update-all-actions"
PRUNE_RESULTS = "prune-results"
