"""Which exceptions mean "the broker cannot be reached", whatever the broker."""

from __future__ import annotations


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker cannot be reached", for every broker kind."""
    import sqlite3

    import redis.exceptions

    errors: list[type[BaseException]] = [
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        sqlite3.OperationalError,
        ConnectionError,
    ]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # the postgres extra is not installed
        pass
    return tuple(errors)
