"""The job registry's tables: one record per job, its failed attempts, live consumers.

Stored in the project database (SQLite or PostgreSQL), so the API, the CLI and
every consumer on every machine see the same records. Times are naive UTC.
"""

from __future__ import annotations

import peewee

from meingym_tasks.db.fields import BaseModel, JSONTextField, UTCDateTimeField

SCHEDULED = "scheduled"
QUEUED = "queued"
RUNNING = "running"
RETRYING = "retrying"
COMPLETE = "complete"
FAILED = "failed"
REVOKED = "revoked"
EXPIRED = "expired"
INTERRUPTED = "interrupted"

STATES = (SCHEDULED, QUEUED, RUNNING, RETRYING, COMPLETE, FAILED, REVOKED, EXPIRED, INTERRUPTED)
#: States a job leaves only when somebody retries it.
FINISHED = (COMPLETE, FAILED, REVOKED, EXPIRED)
#: States from which a job may be retried.
RETRYABLE = (FAILED, REVOKED, EXPIRED, INTERRUPTED)
#: States from which a job may be cancelled before it runs.
CANCELLABLE = (SCHEDULED, QUEUED, RETRYING)


class JobRecord(BaseModel):
    """Everything known about one job, from enqueue until retention removes it."""

    job_id = peewee.CharField(max_length=36, primary_key=True)
    queue = peewee.CharField(max_length=40)
    name = peewee.CharField(max_length=80)
    parent_id = peewee.CharField(max_length=36, null=True)
    arguments = JSONTextField(default=dict)
    state = peewee.CharField(max_length=12)
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=1)
    enqueued_at = UTCDateTimeField()
    scheduled_for = UTCDateTimeField(null=True)
    started_at = UTCDateTimeField(null=True)
    finished_at = UTCDateTimeField(null=True)
    next_attempt_at = UTCDateTimeField(null=True)
    consumer = peewee.CharField(max_length=200, null=True)
    progress_done = peewee.BigIntegerField(null=True)
    progress_total = peewee.BigIntegerField(null=True)
    progress_message = peewee.CharField(max_length=200, null=True)
    result = JSONTextField(null=True)
    error = peewee.TextField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    recoveries = peewee.IntegerField(default=0)
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "job_record"
        # Newest first with keyset pagination, overall and per filter; counts per queue and state;
        # retention by state and finish time.
        indexes = (
            (("enqueued_at", "job_id"), False),
            (("parent_id", "enqueued_at", "job_id"), False),
            (("state", "enqueued_at", "job_id"), False),
            (("queue", "state", "enqueued_at", "job_id"), False),
            (("name", "enqueued_at", "job_id"), False),
            (("state", "finished_at"), False),
        )


class JobCount(BaseModel):
    """Records per queue and state, kept by triggers (migration 0005); read the sum per key.

    SQLite holds one row per key; PostgreSQL appends delta rows that
    :func:`~meingym_tasks.registry.queries.compact_counts` folds up.
    """

    queue = peewee.CharField(max_length=40)
    state = peewee.CharField(max_length=12)
    n = peewee.BigIntegerField()

    class Meta:
        table_name = "job_count"
        primary_key = False


class JobAttempt(BaseModel):
    """One failed attempt of a job: its error and traceback."""

    id = peewee.BigAutoField()
    job_id = peewee.CharField(max_length=36, index=True)
    attempt = peewee.IntegerField()
    error = peewee.TextField()
    traceback = peewee.TextField()
    consumer = peewee.CharField(max_length=200, null=True)
    failed_at = UTCDateTimeField()

    class Meta:
        table_name = "job_attempt"


class ConsumerRecord(BaseModel):
    """A running consumer process and its last heartbeat."""

    consumer_id = peewee.CharField(max_length=200, primary_key=True)
    queue = peewee.CharField(max_length=40)
    host = peewee.CharField(max_length=120)
    pid = peewee.IntegerField()
    workers = peewee.IntegerField()
    worker_type = peewee.CharField(max_length=12)
    started_at = UTCDateTimeField()
    last_seen_at = UTCDateTimeField(index=True)

    class Meta:
        table_name = "job_consumer"


class DeadLetter(BaseModel):
    """A message that could not run: bad signature, undecodable, unknown task, wrong arguments,
    or a job that crashed its consumer too often. Kept for inspection, never executed."""

    id = peewee.BigAutoField()
    queue = peewee.CharField(max_length=40)
    reason = peewee.TextField()
    payload = peewee.TextField()  # the first bytes of the message, hex
    size = peewee.IntegerField()
    consumer = peewee.CharField(max_length=200, null=True)
    received_at = UTCDateTimeField(index=True)

    class Meta:
        table_name = "job_dead_letter"
