"""The registry's common transitions as rows of one statement per kind.

A consumer running a no-op job at full speed made three registry statements
per job through peewee, each a round trip to PostgreSQL and a few hundred
microseconds of query building: more than the job costs huey itself. So the
transitions nearly every job goes through (enqueued, started, completed) are
kept as plain parameter tuples (:class:`RowWrite`) and written per kind in one
go (:func:`write_many`). The SQL is written here rather than built by peewee
because peewee builds (and parameterises) a query per row; ``INSERT .. ON
CONFLICT .. DO UPDATE .. WHERE`` reads the same on SQLite and PostgreSQL.

:func:`plan` folds one batch: a job whose transitions in the batch are one
row write (or "started" then "completed", folded into one ``ran`` row) joins
its kind's rows; a job with anything else keeps all its writes, in order, for
the caller to run one by one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from meingym_tasks.db.database import database
from meingym_tasks.registry.models import COMPLETE, FINISHED, RUNNING

Write = Callable[[], None]

ENQUEUED = "enqueued"
STARTED = "started"
COMPLETED = "completed"
RAN = "ran"  # started and completed in the same batch

#: The columns a row write inserts (every NOT NULL column without a database default).
COLUMNS = (
    "job_id", "queue", "name", "parent_id", "arguments", "state", "attempts", "max_attempts", "enqueued_at",
    "scheduled_for", "started_at", "finished_at", "consumer", "result", "cancel_requested", "recoveries",
    "updated_at",
)  # fmt: skip
STATE, FINISHED_AT, RESULT, UPDATED_AT = (COLUMNS.index(c) for c in ("state", "finished_at", "result", "updated_at"))

MAX_JSON = 64 * 1024


def _in(states: Iterable[str]) -> str:
    return "(" + ", ".join(f"'{state}'" for state in states) + ")"


_FINISHED = _in(FINISHED)
_NOT_RESTARTED = f"job_record.state IN {_FINISHED}"  # a duplicate delivery of a finished job
# A job recovered from a dead (or cut-off) consumer has run at least once more than it was recovered,
# whichever consumer's outcome landed first: the run after a takeover is never silent.
_AT_LEAST_ONE_PER_RECOVERY = (
    "CASE WHEN job_record.attempts < job_record.recoveries + 1 THEN job_record.recoveries + 1 "
    "ELSE job_record.attempts END"
)

# What a conflicting (existing) record becomes, per kind; same guards as the one-by-one writes.
_ON_CONFLICT = {
    ENQUEUED: (
        "state = excluded.state, scheduled_for = excluded.scheduled_for, updated_at = excluded.updated_at "
        f"WHERE job_record.state NOT IN {_in((*FINISHED, RUNNING))}"
    ),
    STARTED: (
        f"state = '{RUNNING}', attempts = job_record.attempts + 1, started_at = excluded.started_at, "
        "consumer = excluded.consumer, scheduled_for = excluded.scheduled_for, next_attempt_at = NULL, "
        f"updated_at = excluded.updated_at WHERE job_record.state NOT IN {_FINISHED}"
    ),
    RAN: (
        f"state = '{COMPLETE}', "
        f"attempts = CASE WHEN {_NOT_RESTARTED} THEN {_AT_LEAST_ONE_PER_RECOVERY} ELSE job_record.attempts + 1 END, "
        f"started_at = CASE WHEN {_NOT_RESTARTED} THEN job_record.started_at ELSE excluded.started_at END, "
        f"consumer = CASE WHEN {_NOT_RESTARTED} THEN job_record.consumer ELSE excluded.consumer END, "
        f"scheduled_for = CASE WHEN {_NOT_RESTARTED} THEN job_record.scheduled_for ELSE excluded.scheduled_for END, "
        "next_attempt_at = NULL, finished_at = excluded.finished_at, result = excluded.result, error = NULL, "
        "updated_at = excluded.updated_at"
    ),
}


#: PostgreSQL type of each of :data:`COLUMNS`, for the staging table.
PG_TYPES = (
    "text", "text", "text", "text", "text", "text", "int", "int", "timestamp",
    "timestamp", "timestamp", "timestamp", "text", "text", "boolean", "int",
    "timestamp",
)  # fmt: skip


def values_sql(kind: str, param: str) -> str:
    """The one-row insert of ``kind`` (not ``completed``) with ``param`` placeholders."""
    placeholders = ", ".join([param] * len(COLUMNS))
    return (
        f"INSERT INTO job_record ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
        f"ON CONFLICT (job_id) DO UPDATE SET {_ON_CONFLICT[kind]}"
    )


#: The ``completed`` update of one row on SQLite, from :func:`completed_params`.
SQLITE_COMPLETED = (
    f"UPDATE job_record SET state = '{COMPLETE}', finished_at = ?1, result = ?2, "
    f"attempts = {_AT_LEAST_ONE_PER_RECOVERY}, error = NULL, updated_at = ?1 WHERE job_id = ?3"
)


#: Where the rows of a batch land first on PostgreSQL (a temporary table, emptied at commit).
STAGING = "job_record_incoming"
#: The staging table: the written columns, all nullable (a ``completed`` row has three of them).
STAGING_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} ("
    + ", ".join(f"{column} {pg_type}" for column, pg_type in zip(COLUMNS, PG_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)


def pg_sql_for(kind: str) -> str:
    """The statement of ``kind`` on PostgreSQL, from the rows copied into :data:`STAGING`."""
    if kind == COMPLETED:
        return (
            f"UPDATE job_record SET state = '{COMPLETE}', finished_at = s.finished_at, result = s.result, "
            f"attempts = {_AT_LEAST_ONE_PER_RECOVERY}, "
            f"error = NULL, updated_at = s.finished_at FROM {STAGING} AS s WHERE job_record.job_id = s.job_id"
        )
    columns = ", ".join(COLUMNS)
    return (
        f"INSERT INTO job_record ({columns}) SELECT {columns} FROM {STAGING} "
        f"ON CONFLICT (job_id) DO UPDATE SET {_ON_CONFLICT[kind]}"
    )


#: The staging columns a ``completed`` row fills, in the order of its parameters.
COMPLETED_COLUMNS = ("finished_at", "result", "job_id")


#: One encoder for every row: ``json.dumps`` with options builds an encoder per call (2 to 3 µs).
_ENCODER = json.JSONEncoder(default=str, sort_keys=True, separators=(",", ":"))


def json_text(value: Any) -> str:
    """``value`` as the JSON text :class:`JSONTextField` stores (unknown types as text; too large: a note)."""
    try:
        text = _ENCODER.encode(value)
    except TypeError:  # keys that do not sort (1 and "a"): JSON makes them all text first
        text = json.dumps(json.loads(json.dumps(value, default=str)), sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_JSON:
        note = {"truncated": True, "size": len(text), "start": text[:1000]}
        return json.dumps(note, sort_keys=True, separators=(",", ":"))
    return text


class RowWrite:
    """One transition of one job as the parameters of its kind's statement.

    Callable like any other registry write (a batch of one), so it also works
    where writes are applied one by one.
    """

    __slots__ = ("job_id", "kind", "params")

    def __init__(self, kind: str, job_id: str, params: tuple[Any, ...]) -> None:
        self.kind = kind
        self.job_id = job_id
        self.params = params

    def __call__(self) -> None:
        write_many(self.kind, [self.params])

    def then(self, later: RowWrite) -> RowWrite | None:
        """This write followed by ``later`` as one row, when the two fold (started, completed)."""
        if self.kind != STARTED or later.kind != COMPLETED:
            return None
        finished_at, result, _ = later.params
        params = list(self.params)
        params[STATE], params[FINISHED_AT] = COMPLETE, finished_at
        params[RESULT], params[UPDATED_AT] = result, finished_at
        return RowWrite(RAN, self.job_id, tuple(params))


def insert_params(
    *,
    job_id: str,
    queue: str,
    name: str,
    parent_id: str | None,
    arguments: str,
    state: str,
    attempts: int,
    max_attempts: int,
    now: datetime,
    scheduled_for: datetime | None,
    consumer: str | None = None,
) -> tuple[Any, ...]:
    """The :data:`COLUMNS` of a new record (``started_at`` is ``now`` when ``state`` is running)."""
    started_at = now if state == RUNNING else None
    return (
        job_id, queue, name, parent_id, arguments, state, attempts, max_attempts, now,
        scheduled_for, started_at, None, consumer, None, False, 0, now,
    )  # fmt: skip


def completed_params(job_id: str, result: str, now: datetime) -> tuple[Any, ...]:
    return (now, result, job_id)


def write_many(kind: str, params: list[tuple[Any, ...]]) -> None:
    """Write rows of ``kind`` in the caller's transaction.

    PostgreSQL: ``COPY`` into a temporary table, then one statement from it.
    One statement whatever the number of rows, so the statement-level count
    triggers run once per batch; ``COPY`` formats rows in C (about 3 us a row
    here, against 12 for ``executemany`` of a one-row statement, 24 for
    ``unnest`` of column arrays and more for one multi-row ``VALUES``).
    SQLite: ``executemany``, which loops in C.
    """
    cursor = database.cursor()
    try:
        if database.param != "%s":
            cursor.executemany(SQLITE_COMPLETED if kind == COMPLETED else values_sql(kind, "?"), params)
            return
        if len(params) == 1 and kind != COMPLETED:
            # One row (the web's synchronous enqueue): a plain VALUES insert, nothing to stage.
            cursor.execute(values_sql(kind, "%s"), params[0])
            return
        cursor.execute(STAGING_DDL)
        columns = ", ".join(COMPLETED_COLUMNS if kind == COMPLETED else COLUMNS)
        with cursor.copy(f"COPY {STAGING} ({columns}) FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        cursor.execute(pg_sql_for(kind))
        cursor.execute(f"DELETE FROM {STAGING}")  # the next kind of this batch stages its own rows
    finally:
        cursor.close()


def plan(batch: list[tuple[str | None, Write]]) -> tuple[dict[str, list[tuple[Any, ...]]], list[Write]]:
    """Split a batch into row writes per kind and the writes that must run one by one, in order."""
    rows: dict[str, RowWrite] = {}
    irregular: set[str | None] = {None}
    for job_id, write in batch:
        if job_id in irregular:
            continue
        assert job_id is not None
        earlier = rows.get(job_id)
        if not isinstance(write, RowWrite):
            folded = None
        elif earlier is None:
            folded = write
        else:
            folded = earlier.then(write)
        if folded is None:
            irregular.add(job_id)
            rows.pop(job_id, None)
        else:
            rows[job_id] = folded
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows.values():
        groups[row.kind].append(row.params)
    one_by_one = [write for job_id, write in batch if job_id in irregular]
    return dict(groups), one_by_one
