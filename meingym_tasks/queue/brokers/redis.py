"""Redis: results expire by themselves, reliable fetch with per-consumer in-flight lists."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis.connection
import redis.exceptions
from huey.storage import RedisExpireStorage
from redis.client import Pipeline
from redis.sentinel import Sentinel, SentinelConnectionPool

from meingym_tasks.settings import parse_sentinel_url

# Moves every due message of the schedule onto the queue in one step, so a
# scheduler killed between huey's "pop from schedule" and "enqueue" loses none.
SCHEDULE_TO_QUEUE_LUA = """\
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
for _, item in ipairs(due) do
    redis.call('lpush', KEYS[2], item)
    redis.call('zrem', KEYS[1], item)
end
return due"""

# Removes finished messages from an in-flight list. BLMOVE pushes on the left, so
# the oldest (usually the ones finishing) sit at the right: LREM with count -1
# searches from there. One script call instead of a pipelined LREM per message:
# the client packs one command per batch instead of one per job.
ACK_LUA = """\
for _, item in ipairs(ARGV) do
    redis.call('lrem', KEYS[1], -1, item)
end
return #ARGV"""
ACK_CHUNK = 1_000

# Takes the next message into the in-flight list and, in the same round trip, reads the two revoke
# flags huey checks before running it: r:<task id> and rt:<task name>. Both names are the first two
# strings of huey's pickled Message (after the class reference); they are found without unpickling,
# and the consumer uses the flags read here only when the task it then decodes (signature checked)
# has that id and name, else it asks again: a message of another shape costs a round trip, nothing more.
TAKE_LUA = """\
local m = redis.call('lmove', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if not m then return false end
local s, e = string.find(m, 'huey.registry\\148\\140\\007Message\\148\\147\\148(\\140', 1, true)
if not s then return {m} end
local n = string.byte(m, e + 1)
local id = string.sub(m, e + 2, e + 1 + n)
local p = e + 2 + n
if string.sub(m, p, p + 1) ~= '\\148\\140' then return {m} end
local k = string.byte(m, p + 2)
local name = string.sub(m, p + 3, p + 2 + k)
return {m, id, name, redis.call('mget', ARGV[1] .. 'r:' .. id, ARGV[1] .. 'rt:' .. name)}"""

# Compare-and-swap of one key: the single-flight claim's takeover and release (see Broker.swap).
SWAP_LUA = """\
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == 'del' then
    redis.call('del', KEYS[1])
elseif tonumber(ARGV[4]) > 0 then
    redis.call('set', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
    redis.call('set', KEYS[1], ARGV[3])
end
return 1"""


def milliseconds(ttl: float) -> int:
    """A time to live in seconds as Redis's ``PX`` (at least 1: Redis refuses 0)."""
    return max(1, round(ttl * 1000))


class ReplicationTimeout(redis.exceptions.ConnectionError):
    """Fewer replicas than asked for (``MEINGYM_REDIS_WAIT_REPLICAS``) confirmed a job in time.

    The job is on the primary and will probably run, but a failover now could
    lose it, so the enqueue is not accepted: producers see ``BrokerUnavailable``
    (API 503, CLI exit 1), as for any broker that cannot take a job.
    """


def sentinel_pool(url: str) -> SentinelConnectionPool:
    """The connection pool of the current primary named by a ``redis+sentinel://`` URL.

    redis-py's Sentinel support does the discovery: each new connection asks
    the sentinels for the primary's address, and a connection to a primary
    that was demoted (``READONLY``) or is gone is dropped, so clients follow a
    failover without a restart. Password, database and options (TLS
    certificates, timeouts) are read as redis-py reads them from ``redis://``.
    Builds nothing that connects: discovery happens on first use.
    """
    target = parse_sentinel_url(url)
    options = redis.connection.parse_url(target.redis_url)
    for key in ("host", "port", "path", "connection_class"):
        options.pop(key, None)
    if target.tls:
        options["ssl"] = True  # SentinelConnectionPool picks its TLS connection class from this
    # The sentinels get the same timeouts and TLS settings, and a password of their own (if any).
    to_sentinels = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))}
    if target.sentinel_password:
        to_sentinels["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=to_sentinels, **options)
    pool: SentinelConnectionPool = sentinel.master_for(target.service).connection_pool
    return pool


class RedisBroker(RedisExpireStorage):
    """Redis: results expire by themselves (``SET ... PX``); reliable fetch with in-flight lists.

    A consumer that called :meth:`lease_for` takes a message with ``BLMOVE``
    from the queue to its own in-flight list and removes it there only when
    the job has ended (:meth:`ack`). Its heartbeat key expires if it dies; any
    consumer's reaper then moves the dead one's in-flight messages back.
    """

    consumer_id: str | None = None

    def __init__(self, name: str, wait_replicas: int = 0, wait_timeout_ms: int = 1000, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        #: Redis ``WAIT`` after every enqueue: how many replicas must have the job, within how long.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.consumers_key = f"huey.consumers.{self.name}"
        self._to_queue = self.conn.register_script(SCHEDULE_TO_QUEUE_LUA)
        self._ack = self.conn.register_script(ACK_LUA)
        self._take = self.conn.register_script(TAKE_LUA)
        #: Per thread: the task id, task name and revoke flags read with the message it took last.
        self._taken = threading.local()
        self._swap = self.conn.register_script(SWAP_LUA)

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        """huey's ``LPUSH``; with ``wait_replicas``, accepted only once that many replicas have the job."""
        if not self.wait_replicas:
            return super().enqueue(data, priority)  # type: ignore[no-any-return]
        self._replicated(lambda pipe: pipe.lpush(self.queue_key, data))

    def add_to_schedule(self, data: bytes, ts: Any) -> None:
        """huey's ``ZADD`` to the schedule (a delayed job), with the same ``WAIT`` as :meth:`enqueue`."""
        if not self.wait_replicas:
            return super().add_to_schedule(data, ts)  # type: ignore[no-any-return]
        self._replicated(lambda pipe: pipe.zadd(self.schedule_key, {data: self.convert_ts(ts)}))

    def _replicated(self, write: Callable[[Pipeline], Any]) -> None:
        """Run ``write`` and ``WAIT`` in one round trip; :class:`ReplicationTimeout` if too few replicas confirm."""
        pipe = self.conn.pipeline(transaction=False)
        write(pipe)
        pipe.wait(self.wait_replicas, self.wait_timeout_ms)
        confirmed = pipe.execute()[-1]
        if confirmed < self.wait_replicas:
            raise ReplicationTimeout(
                f"{confirmed} of {self.wait_replicas} Redis replica(s) confirmed the job within "
                f"{self.wait_timeout_ms} ms (MEINGYM_REDIS_WAIT_REPLICAS); it is not accepted"
            )

    def inflight_key(self, consumer_id: str) -> str:
        return f"huey.inflight.{self.name}.{consumer_id}"

    def heartbeat_key(self, consumer_id: str) -> str:
        return f"huey.heartbeat.{self.name}.{consumer_id}"

    def lease_for(self, consumer_id: str) -> None:
        self.consumer_id = consumer_id

    def dequeue(self) -> bytes | None:
        if self.consumer_id is None:
            return super().dequeue()  # type: ignore[no-any-return]
        target = self.inflight_key(self.consumer_id)
        taken = self._take(keys=[self.queue_key, target], args=[self.result_prefix])
        if taken:  # one round trip: the message and its revoke flags (see TAKE_LUA)
            self._taken.flags = (taken[1].decode(), taken[2].decode(), taken[3]) if len(taken) == 4 else None
            return taken[0]  # type: ignore[no-any-return]
        self._taken.flags = None
        if self.blocking:  # nothing queued: wait for the next message (its flags are read when it runs)
            return self.conn.blmove(self.queue_key, target, self.read_timeout, "RIGHT", "LEFT")  # type: ignore[no-any-return]
        return None

    def taken_flags(self, task_id: str, name: str) -> list[bytes | None] | None:
        """The revoke flags ``r:<task_id>`` and ``rt:<name>`` read with the message this thread took last.

        Once per message, and only when the message was that task: None means
        "not read", and the caller reads them itself.
        """
        flags = getattr(self._taken, "flags", None)
        self._taken.flags = None
        if flags is None or flags[0] != task_id or flags[1] != name:
            return None
        return list(flags[2])

    def ack(
        self,
        messages: Sequence[bytes],
        results: Sequence[tuple[str, bytes, float]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        """Drop finished messages from our in-flight list, after writing their ``results`` and ``deletes``.

        One round trip for the whole batch: one ``DEL`` of every key to delete,
        a ``SET ... PX`` per result, then one script call that removes the
        messages (in that order, so a message leaves only once its result is in).
        """
        key = self.inflight_key(self.consumer_id) if self.consumer_id is not None else None
        chunks = [list(messages[i : i + ACK_CHUNK]) for i in range(0, len(messages), ACK_CHUNK)] if key else []
        if not results and not deletes:
            for chunk in chunks:  # a backlog after an outage: bounded script runs
                self._ack(keys=[key], args=chunk)
            return
        pipe = self.conn.pipeline(transaction=False)
        if deletes:
            pipe.delete(*(self.result_key(k) for k in deletes))
        for result, value, ttl in results:
            pipe.set(self.result_key(result), value, px=milliseconds(ttl))
        for chunk in chunks:
            pipe.evalsha(self._ack.sha, 1, key, *chunk)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:  # the server lost its scripts (a restart): the writes went through
            for chunk in chunks:
                self._ack(keys=[key], args=chunk)
        if self.notify_result:
            for result, _, _ in results:
                self._notify(result)

    def beat(self, ttl: float) -> None:
        assert self.consumer_id is not None
        pipe = self.conn.pipeline()
        pipe.sadd(self.consumers_key, self.consumer_id)
        pipe.set(self.heartbeat_key(self.consumer_id), b"1", px=int(ttl * 1000))
        pipe.execute()

    def inflight(self, consumer_id: str | None = None) -> list[bytes]:
        return self.conn.lrange(self.inflight_key(consumer_id or self.consumer_id or ""), 0, -1)  # type: ignore[no-any-return]

    def dead_consumers(self) -> list[str]:
        members = [m.decode() for m in self.conn.smembers(self.consumers_key)]
        members = [m for m in members if m != self.consumer_id]
        if not members:
            return []
        pipe = self.conn.pipeline()
        for member in members:
            pipe.exists(self.heartbeat_key(member))
        return [m for m, alive in zip(members, pipe.execute(), strict=True) if not alive]

    def claim_one(self, dead_id: str) -> bytes | None:
        """Move one message of a dead consumer's in-flight list into ours (atomic: one reaper gets it)."""
        assert self.consumer_id is not None
        return self.conn.lmove(self.inflight_key(dead_id), self.inflight_key(self.consumer_id), "RIGHT", "LEFT")  # type: ignore[no-any-return]

    def requeue(self, data: bytes) -> None:
        """Put a message we hold back at the head of the queue and drop it from our in-flight list."""
        assert self.consumer_id is not None
        pipe = self.conn.pipeline(transaction=True)
        pipe.rpush(self.queue_key, data)
        pipe.lrem(self.inflight_key(self.consumer_id), 1, data)
        pipe.execute()

    def end_heartbeat(self) -> None:
        """Declare this consumer gone: reapers recover anything left in its in-flight list."""
        if self.consumer_id is not None:
            self.conn.delete(self.heartbeat_key(self.consumer_id))

    def forget_consumer(self, consumer_id: str) -> None:
        pipe = self.conn.pipeline()
        pipe.srem(self.consumers_key, consumer_id)
        pipe.delete(self.heartbeat_key(consumer_id))
        pipe.execute()

    def move_due_to_queue(self, ts: Any) -> list[bytes]:
        return self._to_queue(keys=[self.schedule_key, self.queue_key], args=[self.convert_ts(ts)]) or []  # type: ignore[no-any-return]

    def put_if_empty(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Claim ``key`` unless a live value holds it: True for exactly one of any racing callers.

        One ``SET NX PX``: the claim and its time to live are one atomic step, and
        Redis drops an expired claim itself. Replaces huey's
        ``RedisExpireStorage.put_if_empty``, whose ``EX`` takes whole seconds only
        (redis-py refuses a float such as 0.5).
        """
        return bool(self.conn.set(self.result_key(key), value, nx=True, px=None if ttl is None else milliseconds(ttl)))

    def swap(self, key: str, expected: bytes, new: bytes | None, ttl: float | None = None) -> bool:
        """Replace (or delete) ``key``'s value if it is ``expected``: one Lua script, atomic in Redis."""
        px = 0 if ttl is None else milliseconds(ttl)
        args = [expected, b"del" if new is None else b"set", new or b"", px]
        return bool(self._swap(keys=[self.result_key(key)], args=args))

    def put_result(self, key: str, value: bytes, ttl: float, delete: str | None = None) -> None:
        """Store a result for ``ttl`` seconds, deleting the key ``delete`` in the same round trip."""
        if delete is None:
            self.conn.set(self.result_key(key), value, px=milliseconds(ttl))
        else:
            pipe = self.conn.pipeline(transaction=False)
            pipe.delete(self.result_key(delete))
            pipe.set(self.result_key(key), value, px=milliseconds(ttl))
            pipe.execute()
        if self.notify_result:
            self._notify(key)

    def prune_results(self, now: float | None = None) -> int:
        return 0  # Redis removes expired keys itself.

    def close(self) -> None:
        self.pool.disconnect()
