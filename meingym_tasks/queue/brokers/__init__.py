"""Huey storages with bounded result retention, one per broker kind.

Huey keeps a task's result until somebody reads it, and forever otherwise.
Bull's ``removeOnComplete`` removed finished jobs; here every result gets a
time to live (completed ones short, failures longer) and ``put_if_empty``
accepts one too, for the once-per-night and single-flight keys:

* Redis: huey's ``RedisExpireStorage`` already stores each result under its
  own key; we only choose the time to live (``PX``) per result.
* SQLite and PostgreSQL: huey's ``kv`` table has no expiry column, so an
  extra ``result_expiry`` table records deadlines and :meth:`prune_results`
  (run by a periodic job, off the hot path) deletes what has expired.

Constructors connect to nothing; SQL tables are created on first use.
"""

from __future__ import annotations

from meingym_tasks.queue.brokers.errors import broker_errors
from meingym_tasks.queue.brokers.postgres import PostgresBroker
from meingym_tasks.queue.brokers.redis import RedisBroker
from meingym_tasks.queue.brokers.sqlite import SqliteBroker

__all__ = ["PostgresBroker", "RedisBroker", "SqliteBroker", "broker_errors"]
