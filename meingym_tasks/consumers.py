"""What ``huey_consumer`` is pointed at: each queue with all of its tasks registered.

    huey_consumer meingym_tasks.consumers.actions
    huey_consumer meingym_tasks.consumers.users

Huey's consumer imports only the module it is given, so this module imports
the tasks; the instances themselves connect to nothing until the consumer
starts (settings come from the environment, or ``MEINGYM_CONFIG``).
"""

from meingym_tasks.jobs import tasks  # noqa: F401  (registers every task on its queue)
from meingym_tasks.queue.queues import actions_queue as actions
from meingym_tasks.queue.queues import users_queue as users

__all__ = ["actions", "users"]
