"""One contract for every broker: what reliable fetch, claims and retention rely on.

Each behaviour is tested once and runs on Redis, SQLite and PostgreSQL (the
``broker_url`` fixture). Races are real: several broker objects, each with its
own connection, in threads released at the same moment by a barrier.

Time to live: the SQL brokers compare deadlines with ``time.time()``, which
freezegun moves; Redis expires keys on its own clock, so there the test waits
out a short real time to live (half a second) instead.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from freezegun import freeze_time
from huey.constants import EmptyData

from meingym_tasks.queue.brokers import PostgresBroker, RedisBroker, SqliteBroker
from meingym_tasks.queue.brokers.base import Broker

QUEUE = "contract"
#: How many connections race for one claim, and how many rounds (each a fresh chance to lose the race).
RACERS = 8
ROUNDS = 100
#: Taking over an expired claim has a narrower window to lose in (a look-then-write claim on PostgreSQL
#: gave two winners in 1 to 37 rounds of 200), so it gets more rounds.
EXPIRED_ROUNDS = 200
#: A time to live no test outlasts.
LONG = 600.0


class Brokers:
    """Makes broker objects on one backing store, each with a connection of its own; closes them all."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = {"sqlite": "sqlite", "redis": "redis"}.get(urlsplit(url).scheme, "postgres")
        self.made: list[Broker] = []

    def make(self, consumer_id: str | None = None) -> Broker:
        """A new broker object; with ``consumer_id``, one that takes messages into that consumer's place."""
        broker: Broker
        if self.kind == "redis":
            broker = RedisBroker(QUEUE, url=self.url, clean_name=False, blocking=False)
        elif self.kind == "sqlite":
            broker = SqliteBroker(QUEUE, filename=self.url.removeprefix("sqlite:///"))
        else:
            broker = PostgresBroker(QUEUE, dsn=self.url, table_prefix="meingym_queue", blocking=False)
        if consumer_id is not None:
            broker.lease_for(consumer_id)
        self.made.append(broker)
        return broker

    def close(self) -> None:
        for broker in self.made:
            broker.close()


class Clock:
    """Gets every broker past a short time to live: freezegun for the SQL brokers, a real wait for Redis."""

    def __init__(self, frozen: Any) -> None:
        self.frozen = frozen
        #: A time to live that :meth:`pass_short` outlasts (and :data:`LONG` does not).
        self.short = 30.0 if frozen is not None else 0.5

    def pass_short(self) -> None:
        if self.frozen is None:
            time.sleep(self.short + 0.2)  # Redis's own clock; 200 ms of slack for its expiry
        else:
            self.frozen.tick(self.short + 1)


@pytest.fixture
def brokers(broker_url: str, tmp_path: Path) -> Iterator[Brokers]:
    if broker_url.startswith("sqlite:///"):
        Path(broker_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    made = Brokers(broker_url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def clock(brokers: Brokers) -> Iterator[Clock]:
    if brokers.kind == "redis":
        yield Clock(None)
        return
    # pytest's own clock stays real, so that --durations shows the time a test took, not the ticks.
    with freeze_time(datetime(2026, 11, 30, 12, 0), ignore=["_pytest.timing"]) as frozen:
        yield Clock(frozen)


def race(racers: Sequence[Broker], rounds: int, attempt: Callable[[int, int, Broker], Any]) -> list[list[Any]]:
    """Run ``attempt(round, racer, broker)`` on every racer at once, round after round.

    Each racer is a thread of its own with its own broker (connection); a barrier
    releases all of them together at the start of each round. Returns, per
    round, each racer's answer.
    """
    barrier = threading.Barrier(len(racers), timeout=60)

    def run(index: int) -> list[Any]:
        answers = []
        for number in range(rounds):
            barrier.wait()
            try:
                answers.append(attempt(number, index, racers[index]))
            except BaseException:
                barrier.abort()  # the others stop at once instead of waiting for us
                raise
        return answers

    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        per_racer = [future.result() for future in [pool.submit(run, i) for i in range(len(racers))]]
    return [[answers[number] for answers in per_racer] for number in range(rounds)]


def connected(brokers: Brokers, count: int, consumer: str | None = None) -> list[Broker]:
    """``count`` brokers, each already connected (and its tables made), so that a race measures only the claim."""
    made = [brokers.make(None if consumer is None else f"{consumer}-{n}") for n in range(count)]
    for broker in made:
        broker.has_data_for_key("warm-up")
    return made


def drop_broker_tables(url: str) -> None:
    """Leave the PostgreSQL broker database as new (the ``broker_url`` fixture only empties its tables)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for (table,) in conn.execute("select tablename from pg_tables where schemaname = 'public'").fetchall():
            conn.execute(f'drop table "{table}"')


def test_brokers_first_used_at_the_same_moment_on_a_new_store_all_work(brokers: Brokers) -> None:
    """Each broker makes what it needs on first use; several at once must not trip over each other
    (both consumers starting on a new PostgreSQL database)."""
    if brokers.kind == "postgres":
        drop_broker_tables(brokers.url)
    racers = [brokers.make() for _ in range(RACERS)]

    race(racers, 1, lambda _, index, broker: broker.enqueue(b"%d" % index))

    assert sorted(racers[0].enqueued_items()) == sorted(b"%d" % n for n in range(RACERS))


# --------------------------------------------------------------------------- reliable fetch


def test_a_taken_message_stays_in_flight_until_acknowledged(brokers: Brokers) -> None:
    consumer = brokers.make("consumer")
    consumer.enqueue(b"job-1")

    taken = consumer.dequeue()

    assert taken == b"job-1"
    assert consumer.queue_size() == 0
    assert consumer.inflight() == [b"job-1"]
    assert brokers.make("observer").inflight("consumer") == [b"job-1"]
    consumer.ack([b"job-1"])
    assert consumer.inflight() == []


def test_one_ack_call_drops_many_messages_one_copy_each(brokers: Brokers) -> None:
    consumer = brokers.make("consumer")
    for data in (b"a", b"b", b"twice", b"twice", b"c"):
        consumer.enqueue(data)
    while consumer.dequeue() is not None:
        pass

    consumer.ack([b"a", b"twice", b"c"])

    assert sorted(consumer.inflight()) == [b"b", b"twice"]


def test_an_ack_writes_its_jobs_results_and_deletes_their_flags_in_the_same_call(
    brokers: Brokers, clock: Clock
) -> None:
    consumer = brokers.make("consumer")
    for data in (b"job-1", b"job-2", b"job-3"):
        consumer.enqueue(data)
    while consumer.dequeue() is not None:
        pass
    consumer.put_data("r:job-1", b"revoked while it ran")

    consumer.ack(
        [b"job-1", b"job-2"],
        results=[("job-1", b"one", LONG), ("job-2", b"two", clock.short)],
        deletes=["r:job-1", "r:job-2"],  # job-2 had no flag: nothing to delete, no error
    )

    assert consumer.inflight() == [b"job-3"]
    reader = brokers.make()
    assert reader.peek_data("job-1") == b"one" and reader.peek_data("job-2") == b"two"
    assert not reader.has_data_for_key("r:job-1")
    clock.pass_short()
    assert reader.peek_data("job-2") is EmptyData  # results written with an ack expire like any other
    assert reader.peek_data("job-1") == b"one"
    consumer.ack([], results=[("job-3", b"three", LONG)])  # results alone, nothing acknowledged
    assert reader.peek_data("job-3") == b"three" and consumer.inflight() == [b"job-3"]


def test_racing_consumers_take_each_message_once(brokers: Brokers) -> None:
    messages = [b"message-%03d" % n for n in range(60)]
    producer = brokers.make()
    for data in messages:
        producer.enqueue(data)
    consumers = connected(brokers, 4, "consumer")

    def take_all(_: int, __: int, consumer: Broker) -> list[bytes]:
        taken = []
        while (data := consumer.dequeue()) is not None:
            taken.append(data)
        return taken

    [taken] = race(consumers, 1, take_all)

    assert sorted(data for mine in taken for data in mine) == messages
    for consumer, mine in zip(consumers, taken, strict=True):
        assert sorted(consumer.inflight()) == sorted(mine)


def test_requeue_puts_a_message_back_and_out_of_flight(brokers: Brokers) -> None:
    consumer = brokers.make("consumer")
    consumer.enqueue(b"job-1")
    taken = consumer.dequeue()
    assert taken is not None

    consumer.requeue(taken)

    assert consumer.inflight() == []
    assert consumer.queue_size() == 1
    assert brokers.make("other").dequeue() == b"job-1"


def test_a_consumer_whose_heartbeat_expired_is_dead_a_live_one_is_not(brokers: Brokers, clock: Clock) -> None:
    live, dying, observer = brokers.make("live"), brokers.make("dying"), brokers.make("observer")
    live.beat(LONG)
    dying.beat(clock.short)
    observer.beat(LONG)
    dying.enqueue(b"job-1")
    dying.dequeue()
    assert observer.dead_consumers() == []

    clock.pass_short()

    assert observer.dead_consumers() == ["dying"]
    assert dying.dead_consumers() == []  # nobody counts itself dead
    dying.beat(LONG)  # beating again brings it back
    assert observer.dead_consumers() == []


def test_a_consumer_that_ended_its_heartbeat_is_dead_at_once(brokers: Brokers) -> None:
    leaving, observer = brokers.make("leaving"), brokers.make("observer")
    leaving.beat(LONG)
    leaving.enqueue(b"job-1")
    leaving.dequeue()

    leaving.end_heartbeat()

    assert observer.dead_consumers() == ["leaving"]


def test_racing_reapers_claim_each_message_of_a_dead_consumer_once(brokers: Brokers) -> None:
    messages = [b"message-%03d" % n for n in range(60)]
    dead = brokers.make("dead")
    dead.beat(LONG)  # as every lease does before it takes anything
    for data in messages:
        dead.enqueue(data)
    while dead.dequeue() is not None:
        pass
    dead.end_heartbeat()
    reapers = connected(brokers, 4, "reaper")
    for reaper in reapers:
        reaper.beat(LONG)

    def reap(_: int, __: int, reaper: Broker) -> list[bytes]:
        assert reaper.dead_consumers() == ["dead"]
        claimed = []
        while (data := reaper.claim_one("dead")) is not None:
            claimed.append(data)
        return claimed

    [claimed] = race(reapers, 1, reap)

    assert sorted(data for mine in claimed for data in mine) == messages
    for reaper, mine in zip(reapers, claimed, strict=True):
        assert sorted(reaper.inflight()) == sorted(mine)
    assert reapers[0].inflight("dead") == []


def test_a_forgotten_consumer_is_no_longer_dead(brokers: Brokers, clock: Clock) -> None:
    gone, observer = brokers.make("gone"), brokers.make("observer")
    gone.beat(clock.short)
    gone.enqueue(b"job-1")
    gone.dequeue()
    clock.pass_short()
    assert observer.dead_consumers() == ["gone"]
    assert observer.claim_one("gone") == b"job-1"

    observer.forget_consumer("gone")

    assert observer.dead_consumers() == []
    assert observer.inflight() == [b"job-1"]


def test_racing_schedulers_move_each_due_message_onto_the_queue_once(brokers: Brokers) -> None:
    scheduler = brokers.make()
    due = [b"due-%02d" % n for n in range(30)]
    for n, data in enumerate(due):
        scheduler.add_to_schedule(data, datetime(2026, 11, 30, 3, n))
    scheduler.add_to_schedule(b"later", datetime(2026, 12, 1, 3, 0))
    schedulers = connected(brokers, 4)

    [moved] = race(schedulers, 1, lambda _, __, broker: broker.move_due_to_queue(datetime(2026, 11, 30, 4, 0)))

    assert sorted(data for mine in moved for data in mine) == due
    assert sorted(scheduler.enqueued_items()) == due
    assert scheduler.scheduled_items() == [b"later"]


# --------------------------------------------------------------------------- results and claims


def test_a_result_lives_for_its_time_to_live(brokers: Brokers, clock: Clock) -> None:
    broker = brokers.make()
    broker.put_data("revoke-flag", b"1")
    broker.put_result("short", b"done", clock.short, delete="revoke-flag")
    broker.put_result("long", b"failed", LONG)

    assert broker.peek_data("short") == b"done"
    assert broker.has_data_for_key("short")
    assert not broker.has_data_for_key("revoke-flag")  # deleted with the same call

    clock.pass_short()

    assert broker.peek_data("short") is EmptyData
    assert not broker.has_data_for_key("short")
    pruned = broker.prune_results()
    assert pruned == (0 if brokers.kind == "redis" else 1)  # Redis expires keys itself
    assert broker.result_items() == {"long": b"failed"}
    assert broker.prune_results() == 0


def test_a_claim_holds_for_its_time_to_live_then_is_taken_over_once(brokers: Brokers, clock: Clock) -> None:
    broker = brokers.make()
    assert broker.put_if_empty("claim", b"first", clock.short)
    assert not broker.put_if_empty("claim", b"second", clock.short)
    assert broker.peek_data("claim") == b"first"

    clock.pass_short()

    assert not broker.has_data_for_key("claim")
    assert broker.put_if_empty("claim", b"third", LONG)
    assert not broker.put_if_empty("claim", b"fourth", LONG)
    clock.pass_short()  # the new claim's time to live is its own, not the expired one's
    assert broker.peek_data("claim") == b"third"


def test_a_claim_without_a_time_to_live_never_expires_even_over_an_expired_one(brokers: Brokers, clock: Clock) -> None:
    broker = brokers.make()
    assert broker.put_if_empty("claim", b"first", clock.short)
    clock.pass_short()

    assert broker.put_if_empty("claim", b"second")
    clock.pass_short()

    assert broker.peek_data("claim") == b"second"
    broker.prune_results()
    assert broker.peek_data("claim") == b"second"


def test_a_closed_broker_reconnects_on_next_use(brokers: Brokers) -> None:
    consumer = brokers.make("consumer")
    consumer.put_data("key", b"value")
    consumer.enqueue(b"job-1")

    consumer.close()

    assert consumer.peek_data("key") == b"value"
    assert consumer.dequeue() == b"job-1"
    assert consumer.inflight() == [b"job-1"]
    consumer.close()
    consumer.close()  # closing twice is harmless
    assert consumer.queue_size() == 0


# --------------------------------------------------------------------------- one winner per claim


def claim_race(racers: Sequence[Broker], rounds: int, ttl: float | None) -> list[list[bool]]:
    """Every racer tries to claim key ``race-<round>`` with its own value, all at once, round after round."""
    return race(racers, rounds, lambda number, index, broker: broker.put_if_empty(f"race-{number}", b"%d" % index, ttl))


def assert_one_winner_per_round(racers: Sequence[Broker], outcome: list[list[bool]]) -> None:
    winners = Counter(sum(answers) for answers in outcome)
    assert winners == {1: len(outcome)}, f"rounds by number of winners: {dict(winners)}"
    for number, answers in enumerate(outcome):  # the stored value is the winner's
        assert racers[0].peek_data(f"race-{number}") == b"%d" % answers.index(True)


def test_one_winner_among_connections_racing_for_a_claim(brokers: Brokers) -> None:
    racers = connected(brokers, RACERS)

    outcome = claim_race(racers, ROUNDS, LONG)

    assert_one_winner_per_round(racers, outcome)


def test_one_winner_among_connections_racing_for_an_expired_claim(brokers: Brokers, clock: Clock) -> None:
    racers = connected(brokers, RACERS)
    rounds = EXPIRED_ROUNDS
    for number in range(rounds):
        assert racers[0].put_if_empty(f"race-{number}", b"expired", clock.short)
    clock.pass_short()

    outcome = claim_race(racers, rounds, LONG)

    assert_one_winner_per_round(racers, outcome)


# --------------------------------------------------------------------------- compare-and-swap


def test_swap_changes_a_claim_only_while_it_holds_the_expected_value(brokers: Brokers, clock: Clock) -> None:
    broker = brokers.make()
    assert broker.put_if_empty("claim", b"first", LONG)

    assert not broker.swap("claim", b"someone else", b"second", LONG)  # not what it holds: nothing changes
    assert broker.peek_data("claim") == b"first"
    assert broker.swap("claim", b"first", b"second", clock.short)
    assert broker.peek_data("claim") == b"second"
    assert not broker.swap("claim", b"first", None)  # a stale holder's release leaves the new claim
    assert broker.peek_data("claim") == b"second"

    clock.pass_short()  # the swapped-in value lives for its own time to live

    assert not broker.swap("claim", b"second", None)  # an expired claim is nobody's to release
    assert broker.put_if_empty("claim", b"third", LONG)
    assert broker.swap("claim", b"third", None)
    assert not broker.has_data_for_key("claim")
    assert not broker.swap("claim", b"third", b"fourth")  # nothing there: nothing to swap


def test_one_winner_among_connections_racing_to_swap_one_claim(brokers: Brokers) -> None:
    racers = connected(brokers, RACERS)
    for number in range(ROUNDS):
        assert racers[0].put_if_empty(f"race-{number}", b"stale", LONG)

    outcome = race(racers, ROUNDS, lambda number, index, broker: broker.swap(f"race-{number}", b"stale", b"%d" % index))

    assert_one_winner_per_round(racers, outcome)
