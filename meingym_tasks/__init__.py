"""meingym-tasks: MeinGym's background jobs on Huey and Peewee."""

__version__ = "0.1.0"
