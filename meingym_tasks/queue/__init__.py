"""The queue core: the Huey subclass, the brokers, reliable fetch, the schedule, claims."""
