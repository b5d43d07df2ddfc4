"""Shared settings for the pipeline tests: short intervals handed to the worker's
environment so that retries, sweeps and leases happen within seconds."""

FAST = {
    "MAILROOM_SWEEP_SECONDS": "0.5",
    "MAILROOM_LEASE_SECONDS": "4",
    "MAILROOM_MIN_BACKOFF_SECONDS": "1",
    "MAILROOM_MAX_BACKOFF_SECONDS": "2",
    "MAILROOM_CONNECTION_IDLE_SECONDS": "30",
}
