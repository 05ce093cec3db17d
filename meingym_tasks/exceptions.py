"""Every error meingym-tasks raises on purpose derives from one base class."""

from __future__ import annotations

import peewee


class MeinGymTasksError(Exception):
    """Base class for errors raised by meingym-tasks."""


class ConfigurationError(MeinGymTasksError):
    """A setting has a value that is not allowed; the message names both."""


class InvalidJobRequest(MeinGymTasksError, ValueError):
    """A job was asked for with arguments that can never work; nothing was enqueued."""


class InvalidJobArguments(InvalidJobRequest):
    """Arguments (or a delay or ETA) that the job's declaration does not allow; nothing was enqueued.

    ``errors`` names each field at fault: ``[{"field", "message", "type"}]``,
    the shape of the API's 422 answers.
    """

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class PermanentJobError(MeinGymTasksError):
    """A job failed for a reason a retry cannot fix (it is not retried)."""


class UnknownUser(PermanentJobError):
    """The job names a user that does not exist."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} does not exist")
        self.user_id = user_id


class ValidationError(PermanentJobError, ValueError):
    """Data that violates the domain's rules (negative reps, unknown kind, ...)."""


class UnknownJob(MeinGymTasksError, LookupError):
    """No job with this id is known to the queues."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class BrokerUnavailable(MeinGymTasksError):
    """The queue broker could not be reached; nothing was enqueued."""


class JobCancelled(PermanentJobError):
    """Somebody cancelled the job while it ran; it stops where it checks and is not retried."""


class JobStateConflict(MeinGymTasksError):
    """The job is in a state that does not allow the requested change (retry, cancel)."""


def is_permanent(error: BaseException) -> bool:
    """True for errors a retry cannot fix: the job fails at once instead of being retried.

    Ours (:class:`PermanentJobError`: unknown user, invalid data, cancelled) and
    the database refusing the data itself (``peewee.DataError``: invalid input
    syntax, a NUL character in text, a number out of range). Integrity errors
    are retried: a unique key two jobs raced for is free again on the next try.
    """
    return isinstance(error, PermanentJobError | peewee.DataError)
