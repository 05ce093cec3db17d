"""``MeinGymHuey``: Huey with lazy, settings-driven storage, signed messages and expiring results.

Building one connects to nothing: storage and serializer are made from
:class:`Settings` on first use (the environment, unless :meth:`configure`
bound explicit settings first). Job defaults (3 attempts, backoff 5 s then
15 s) are read from those settings when a job is enqueued.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from huey import Huey
from huey import signals as S
from huey.api import PeriodicTask, Task, TaskWrapper
from huey.constants import EmptyData
from huey.consumer import Consumer
from huey.serializer import SignedSerializer
from huey.utils import Error

from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import private_sqlite_file
from meingym_tasks.exceptions import is_permanent
from meingym_tasks.queue.brokers import PostgresBroker, RedisBroker, SqliteBroker, broker_errors
from meingym_tasks.queue.brokers.base import Broker
from meingym_tasks.queue.brokers.redis import sentinel_pool
from meingym_tasks.queue.context import current_task
from meingym_tasks.queue.health import BrokerHealth
from meingym_tasks.queue.keys import queue_secret
from meingym_tasks.queue.observer import NullObserver, QueueObserver
from meingym_tasks.queue.reliable import Lease, ReliableConsumer
from meingym_tasks.settings import Settings, is_sentinel_url

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("meingym_tasks.queue")

#: The module part of every job's huey name (``meingym_tasks.tasks.process-user-data``), whatever file declares it.
TASK_NAMESPACE = "meingym_tasks.tasks"


class JobTask(Task):
    """A task whose retry defaults come from its queue's settings, not from import time."""

    queue_app: MeinGymHuey
    job_function: Callable[..., Any]
    #: Set by a job whose outcome is written later, by other jobs (see registry.defer_completion).
    completes_later = False

    @property  # type: ignore[override]
    def default_retries(self) -> int:
        return self.queue_app.settings.retries

    @property  # type: ignore[override]
    def default_retry_delay(self) -> float:
        return self.queue_app.settings.retry_delay

    @property  # type: ignore[override]
    def default_retry_backoff(self) -> float:
        return self.queue_app.settings.retry_backoff

    def resolve_expires(self, utc: bool = True) -> datetime | None:
        # huey resolves a relative expiry on its import-time clock; use the queue's (see _get_timestamp).
        if self.expires and not isinstance(self.expires, datetime):
            seconds = self.expires.total_seconds() if isinstance(self.expires, timedelta) else self.expires
            self.expires_resolved = self.queue_app._get_timestamp() + timedelta(seconds=seconds)
            return self.expires_resolved
        return super().resolve_expires(utc)  # type: ignore[no-any-return]


class PeriodicJobTask(JobTask, PeriodicTask):
    """A :class:`JobTask` the scheduler enqueues when its ``validate_datetime`` says so."""


@functools.lru_cache(maxsize=256)
def signature_of(function: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature``, once per job function (it is checked for every message)."""
    return inspect.signature(function)


@functools.lru_cache(maxsize=1024)
def _misfit(function: Callable[..., Any], positional: int, names: frozenset[str]) -> str | None:
    """Why ``positional`` arguments and keyword arguments ``names`` do not bind to ``function`` (None: they do).

    Binding depends on the shape of a call, not on its values, so each shape
    is bound once (``Signature.bind`` costs about 5 µs a message).
    """
    signature = signature_of(function)
    kwargs: dict[str, Any] = dict.fromkeys(names)
    if "task" in signature.parameters:
        kwargs["task"] = None
    try:
        signature.bind(*([None] * positional), **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def check_arguments(task: Task) -> None:
    """Raise TypeError when the message's arguments do not fit the job's signature."""
    if not isinstance(task, JobTask):
        return
    kwargs = task.kwargs
    names = frozenset(name for name in kwargs if name != "task") if kwargs else frozenset()
    misfit = _misfit(task.job_function, len(task.args), names)
    if misfit is not None:
        raise TypeError(misfit)


class SignedMessages(SignedSerializer):
    """huey's signed serializer (the same bytes on the wire), its HMAC from precomputed pads.

    huey keys a new ``hmac.HMAC`` for every message; HMAC-SHA1 is two SHA-1s
    over the key's inner and outer pads, so those are hashed once here and
    copied per message (0.8 instead of 1.8 µs). Every message is signed when
    enqueued and checked when taken, and every result is signed.
    """

    def __init__(self, secret: str | bytes, salt: str = "huey", **kwargs: Any) -> None:
        super().__init__(secret=secret, salt=salt, **kwargs)
        key = self._key.ljust(64, b"\0")  # SHA-1's block: 64 bytes (the key is a 20-byte digest)
        self._inner = hashlib.sha1(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha1(bytes(byte ^ 0x5C for byte in key))

    def _signature(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode()


class _Executing(threading.local):
    """Per worker thread: the job being executed, its message, and its revoke flag's delete waiting for the result."""

    task: Task | None = None
    message: bytes | None = None
    revoke_flag: str | None = None
    #: The message of the job executing under a lease: its result travels with its acknowledgement.
    holding: bytes | None = None


class MeinGymHuey(Huey):
    """Huey with lazy, settings-driven storage, signed messages and expiring results."""

    def __init__(self, name: str) -> None:
        self._settings: Settings | None = None
        self._storage: Broker | None = None
        self._serializer: SignedSerializer | None = None
        super().__init__(name, results=True, store_none=False, utc=True, store_intermediate_errors=False)
        self._serializer = None  # huey made a plain one; ours is signed and made lazily
        #: Who keeps the record of this queue's jobs (the registry, see :meth:`observe`).
        self.observer: QueueObserver = NullObserver()
        #: This process's messages in flight (reliable fetch).
        self.lease = Lease(self)
        self.health = BrokerHealth(name)
        #: Per worker thread: the job being executed, and its revoke flag's delete waiting for the result.
        self._executing = _Executing()

    # -- configuration ---------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def configure(self, settings: Settings | None) -> None:
        """Use ``settings`` from now on (None: read the environment again on next use)."""
        self.observer.reconfiguring()
        self.lease.reset()
        self.close()
        self._settings = settings
        self._serializer = None

    def observe(self, observer: QueueObserver) -> None:
        """Tell ``observer`` what happens to this queue's jobs beyond huey's signals (see observer.py)."""
        self.observer = observer

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()
        self._storage = None

    def task_class(self, name: str) -> type[Task]:
        """The registered task class of job ``name`` on this queue (KeyError if none)."""
        for task_class in self._registry._registry.values():  # huey offers no public lookup by name
            if task_class.__name__ == name:
                return task_class  # type: ignore[no-any-return]
        raise KeyError(name)

    # -- reliable consumption -------------------------------------------------------------------------

    def enqueue(self, task: Any) -> Any:
        # huey emits "enqueued" before the broker has the message; tell the observer when it refused it.
        try:
            return super().enqueue(task)
        except Exception:
            if isinstance(task, Task):
                self.observer.enqueue_failed(task)
            raise

    def dead_letter(self, data: bytes, reason: str) -> None:
        logger.error("%s: dead-lettered a message: %s", self.name, reason)
        try:
            self.observer.dead_lettered(data, reason)
        except Exception:
            logger.exception("%s: could not keep a dead letter", self.name)

    def dequeue(self) -> Task | None:
        """Take the next message; a message that cannot run is dead-lettered, never executed.

        Replaces huey's dequeue, which deserializes whatever it reads (a message
        with a bad signature or unknown task raises in the worker loop and is
        lost) and logs a traceback per poll while the broker is away.
        """
        if not self.lease.ready():  # a lease the broker has not heard of yet takes nothing
            time.sleep(0.1)
            return None
        try:
            data = self.storage.dequeue()
        except broker_errors() as exc:
            self.health.report_error(exc)
            return None
        self.health.report_ok()
        if data is None or not self.lease.taken(data):
            return None
        task = None
        try:
            task = self.deserialize_task(data)
            check_arguments(task)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if task is not None:  # it decoded (wrong arguments): its record ends failed, with the reason
                self.observer.given_up(task, f"dead-lettered, never run: {reason}")
            self.dead_letter(data, reason)
            self.lease.rejected(data)
            return None
        self._executing.message = data  # huey's worker executes what it dequeued, in the same thread
        return task

    def execute(self, task: Task, timestamp: datetime | None = None) -> Any:
        """huey's execute, then the message is acknowledged as the lease's policy says.

        After huey's execute, not in a post_execute hook: huey stores the result,
        schedules the retry and enqueues what follows (chords, pipelines) after
        its hooks ran, and the message must stay in flight until all of that is done.
        """
        data: bytes | None = self._executing.message
        self._executing.message = None
        self._executing.task = task
        self._executing.holding = data if self.lease.active else None
        try:
            try:
                value = super().execute(task, timestamp)
            finally:
                self._executing.task = None
                self._executing.holding = None
                self._delete_revoke_flag(data if self.lease.active else None)
        except Exception as exc:
            # huey failed around the job (the broker went away while it stored the outcome). The
            # message stays in our in-flight place, released for the orphan check to put it back
            # once the broker is up: the job runs again.
            if data is not None:
                self.lease.lost(data)
            if isinstance(exc, broker_errors()):
                self.health.report_error(exc, sleep=False)
                return None
            raise
        if data is not None:
            self.lease.finished(data, task)  # complete, failed, retried, revoked or scheduled again
        return value

    def delete(self, key: str) -> Any:
        """Delete ``key``; the executing job's revoke flag waits to travel with its result.

        huey clears a job's revoke flag right before it stores the job's result:
        two broker round trips in a row, for every job, and the flag is almost
        never there. The delete goes in the same pipeline (Redis) or transaction
        (SQL) as the result instead (under a lease: with the message's
        acknowledgement), or on its own once the job is done when no result is stored.
        """
        task = self._executing.task
        if task is not None and key == task.revoke_id and self._executing.revoke_flag is None:
            self._executing.revoke_flag = key
            return True
        return super().delete(key)

    def _delete_revoke_flag(self, holding: bytes | None) -> None:
        flag = self._executing.revoke_flag
        if flag is not None:
            self._executing.revoke_flag = None
            if holding is not None:
                self.lease.store_with_ack(holding, delete=flag)
                return
            try:
                self.storage.delete_data(flag)
            except broker_errors() as exc:  # the job has ended all the same: do not run it again for this
                self.health.report_error(exc, sleep=False)

    def is_revoked(self, task: Any, timestamp: datetime | None = None, peek: bool = True) -> bool:
        """huey's revoke check; for a message just taken, with the flags the broker read as it took it.

        huey reads a task's two revoke flags (``r:<id>``, ``rt:<name>``) right
        before running it: a round trip per job. The Redis broker reads them in
        the round trip that takes the message (see ``TAKE_LUA``); the decisions
        below are huey's own (:meth:`_check_revoked`), on the same values.
        """
        if isinstance(task, Task):
            flags = self.storage.taken_flags(task.id, self._registry.task_to_string(type(task)))
            if flags is not None:
                keys = (task.revoke_id, self._task_key(type(task), "rt"))
                for key, value in zip(keys, flags, strict=True):
                    revoked, restore = self._check_revoked(EmptyData if value is None else value, timestamp, peek)
                    if restore:
                        self.delete(key)
                    if revoked:
                        return True
                return False
        return bool(super().is_revoked(task, timestamp, peek))

    def read_schedule(self, timestamp: datetime | None = None) -> list[Task]:
        """Move due scheduled jobs onto the queue in one broker step (none lost to a crash in between).

        Replaces huey's read-then-enqueue, which loses the due jobs it read if
        the scheduler dies in between. Returns nothing for huey's scheduler to
        enqueue: the broker already did.
        """
        timestamp = timestamp or self._get_timestamp()
        try:
            moved = self.storage.move_due_to_queue(timestamp)
        except broker_errors() as exc:
            self.health.report_error(exc, sleep=False)
            return []
        for task in self._deserialize_all(moved):  # what huey's own enqueue would have emitted
            self._emit(S.SIGNAL_ENQUEUED, task)
        return []

    def create_consumer(self, **options: Any) -> Consumer:
        return ReliableConsumer(self, **options)

    # -- lazy storage and serializer -----------------------------------------------------------------

    def create_storage(self) -> None:  # type: ignore[override]
        # Replaces huey's, which builds (and for Redis, connects) the storage in the constructor.
        return None  # built on first use, see the storage property

    @property
    def storage(self) -> Broker:
        if self._storage is None:
            self._storage = Huey.create_storage(self)
        return self._storage

    @storage.setter
    def storage(self, value: Broker | None) -> None:
        self._storage = value

    @property
    def serializer(self) -> SignedSerializer:
        if self._serializer is None:
            # Signed, so a message that was not written by someone holding the
            # key is never unpickled by a consumer.
            self._serializer = SignedMessages(secret=queue_secret(self.settings), salt="meingym-tasks")
        return self._serializer

    @serializer.setter
    def serializer(self, value: Any) -> None:
        self._serializer = value

    def get_storage(self, **kwargs: Any) -> Broker:
        settings = self.settings
        url = settings.broker_url
        if settings.broker == "redis":
            # clean_name=False keeps the real queue names in the Redis keys.
            options: dict[str, Any] = {
                "clean_name": False,
                "expire_time": settings.result_ttl,
                "wait_replicas": settings.redis_wait_replicas,
                "wait_timeout_ms": settings.redis_wait_timeout_ms,
            }
            if is_sentinel_url(url):  # the primary is whichever the sentinels name, now and after a failover
                return RedisBroker(self.name, connection_pool=sentinel_pool(url), **options)
            return RedisBroker(self.name, url=url, **options)
        if settings.broker == "postgres":
            return PostgresBroker(self.name, dsn=url, table_prefix="meingym_queue")
        path = urlsplit(url).path
        filename = url[len("sqlite:///") :] if url.startswith("sqlite:///") else path
        private_sqlite_file(Path(filename))  # it holds job results (recipients' addresses): 0600
        return SqliteBroker(self.name, filename=filename)

    def _get_timestamp(self) -> datetime:
        # Replaces huey's clock: huey.utils.utcnow is bound to the real clock at import,
        # where freezegun cannot reach it; meingym_tasks.clock gives huey, the jobs and
        # the tests one clock.
        return utcnow()

    # -- results -----------------------------------------------------------------------------------

    def put_result(self, key: str, data: Any) -> Any:
        """Store a result with a time to live: short for completed jobs, longer for failures.

        Replaces huey's, which keeps a result until somebody reads it (forever, for most).
        Under a lease, the executing job's own result is written with its
        message's acknowledgement (:meth:`Lease.store_with_ack`): one broker call
        per batch of jobs for results, revoke flags and acknowledgements, instead
        of a round trip per job. The message stays in flight until then, so a
        consumer that dies first runs the job again and no result is lost; a
        reader meanwhile finds the job pending, or complete in the registry,
        which is written before. Other keys (a chord's member results, read at
        once by the member that completes the chord) are written now.
        """
        settings = self.settings
        ttl = settings.failed_result_ttl if isinstance(data, Error) else settings.result_ttl
        value = self.serializer.serialize(data)
        flag = self._executing.revoke_flag
        self._executing.revoke_flag = None
        holding, task = self._executing.holding, self._executing.task
        if holding is not None and task is not None and key == task.id:
            self.lease.store_with_ack(holding, key, value, ttl, delete=flag)
            return None
        return self.storage.put_result(key, value, ttl, delete=flag)

    def build_error_result(self, task: Task, exception: BaseException) -> dict[str, Any]:
        """The stored failure: a readable reason (``Kind: message``), the traceback, retryability."""
        text = str(exception)
        return {
            "error": f"{type(exception).__name__}: {text}" if text else type(exception).__name__,
            "retryable": not is_permanent(exception),
            "retries": task.retries,
            "traceback": "".join(traceback.format_exception(exception)),
            "task_id": task.id,
        }

    # -- job declaration -----------------------------------------------------------------------------

    def job(
        self,
        name: str,
        *,
        retry: bool = True,
        due: Callable[[datetime], bool] | None = None,
        wrapper: Callable[..., TaskWrapper] = TaskWrapper,
    ) -> Callable[[F], TaskWrapper]:
        """Declare the function as job ``name`` on this queue, with the default job options.

        A :class:`PermanentJobError` raised by the job ends it at once (no retry);
        any other exception is retried with backoff. ``due`` makes it a periodic
        job: the scheduler asks it every minute with the current UTC time.
        The function receives ``task=`` (huey's Task) when it declares that parameter.
        ``wrapper`` builds the task function (a TaskWrapper subclass: the jobs'
        declarations check arguments there, see ``meingym_tasks.jobs.declare``).
        """

        def decorator(fn: F) -> TaskWrapper:
            wants_task = "task" in inspect.signature(fn).parameters

            @functools.wraps(fn)
            def run(*args: Any, task: Task | None = None, **kwargs: Any) -> Any:
                token = current_task.set(task)
                try:
                    return fn(*args, task=task, **kwargs) if wants_task else fn(*args, **kwargs)
                except Exception as exc:
                    if task is not None and is_permanent(exc):  # task is None when called with call_local()
                        task.retries = 0  # huey treats a task with no retries left as finally failed
                    raise
                finally:
                    current_task.reset(token)

            # huey names a message's task "<module>.<name>"; a fixed namespace keeps the
            # messages of one release runnable by the next even when a job's module moves.
            attrs: dict[str, Any] = {
                "queue_app": self,
                "job_function": staticmethod(fn),
                "__module__": TASK_NAMESPACE,
            }
            base: type[Task] = JobTask
            if not retry:
                attrs["default_retries"] = 0
            if due is not None:
                base = PeriodicJobTask
                attrs["validate_datetime"] = lambda _task, timestamp: due(timestamp)
            return wrapper(self, run, context=True, name=name, task_base=base, **attrs)

        return decorator
