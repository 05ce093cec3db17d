"""Benchmarks of meingym-tasks: ``make bench`` (full sizes) and ``make bench-smoke`` (tiny, in CI).

Every figure is a ratio against a baseline measured in the same run (plain
huey, raw redis-py, one SQL statement), the median of several runs with its
min-max, because the machines are shared and absolute numbers drift. See
``docs/performance.md`` for the latest results and how to read them.

Sections, one module each: :mod:`bench.throughput` (no-op jobs, plain huey
against the full stack), :mod:`bench.update` (update-all-actions against the
single-statement floor), :mod:`bench.http_api` (the jobs API) and
:mod:`bench.memory` (consumer RSS over many jobs). :mod:`bench.child` is the
consumer process they start; :mod:`bench.services` the private Redis and the
throwaway PostgreSQL database they run against.
"""
