"""The project's exception family: every error raised on purpose derives from ClickstreamError.

Bad input events are *not* exceptions: they are data routed to the dead-letter topic. These types
are for operator-facing failures (configuration, unreachable services, a broken local stack).
"""

import enum


class Failure(enum.Enum):
    """How a failed write is handled (``storage/failures.py``, ``indexing/failures.py``)."""

    #: A server restarting, overloaded or unreachable: pause and retry the batch.
    RETRIABLE = "retriable"
    #: This one document can never be written: record it (metric, log line) and go on.
    DOCUMENT = "document"
    #: Every write would fail alike (a missing family, a wrong mapping): exit naming the fix.
    CONFIGURATION = "configuration"


class ClickstreamError(Exception):
    """Root of every error this project raises on purpose; the CLI prints it without a traceback."""


class ConfigError(ClickstreamError):
    """A setting is missing, malformed or contradicts another; the message names the setting."""


class RetriableError(ClickstreamError):
    """A transient failure (a server restarting, a timeout): retrying later may succeed."""


class StackError(ClickstreamError):
    """The local development stack could not be fetched, started, probed or stopped."""


class SchemaError(ClickstreamError):
    """An existing topic, table or index does not match what the pipeline needs."""
