"""One step of the daemon's Kafka transaction, with librdkafka's error classes applied.

librdkafka's transactional API documents what each error of ``begin_transaction``,
``produce``, ``send_offsets_to_transaction`` and ``commit_transaction`` asks of the caller:

* **retriable** (``error.retriable()``, e.g. a commit that timed out while it goes on in the
  background): call the *same* function again; the transaction is still open, so starting over
  with ``begin_transaction`` would fail forever ("Operation not valid in state InTransaction");
* **abortable** (``error.txn_requires_abort()``, e.g. the transaction timed out on the broker):
  ``abort_transaction``, then replay the batch in a new transaction;
* **fatal** (``error.fatal()``, e.g. the producer was fenced by another with the same
  transactional id): the producer is unusable; the daemon exits non-zero;
* anything else is a bug or a state error: abort, then replay the batch.

A full local producer queue raises ``BufferError`` from ``produce``: serve the delivery
callbacks (``poll``) and produce again. Each repetition goes through ``wait``, the daemon's
backoff, which pings the watchdog, serves the consumer group and says whether to go on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException

from clickstream.errors import ClickstreamError, RetriableError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class FatalIngestError(ClickstreamError):
    """The daemon cannot go on (e.g. its transactional producer was fenced by another)."""


class TxnAction(enum.Enum):
    """What an error of a transactional call asks for."""

    REPEAT = "repeat the same call"
    ABORT = "abort, then replay the batch"
    EXIT = "exit: the producer is unusable"


def action_for(error: KafkaError) -> TxnAction:
    """The caller's move after ``error``, as librdkafka documents it (fatal first: a fatal
    error may also say retriable)."""
    if error.fatal():
        return TxnAction.EXIT
    if error.txn_requires_abort():
        return TxnAction.ABORT
    if error.retriable():
        return TxnAction.REPEAT
    return TxnAction.ABORT


def fatal_message(what: str, error: KafkaError) -> str:
    """The message a fatal error exits with, naming the likely fix."""
    fix = "restart the daemon"
    fenced = error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)
    if fenced or "fenced" in error.str().lower():  # a consumer's reads "_FATAL: ... fenced"
        fix = (
            "another producer uses this daemon's transactional id: give every daemon its own "
            "--instance (the default holds the host name), and make sure one is not running twice"
        )
    return f"Kafka {what} failed fatally: {error.str()} ({fix})"


def step(
    what: str,
    call: Callable[[], T],
    *,
    wait: Callable[[int], bool],
    abort: Callable[[], None],
    poll: Callable[[], None],
) -> T:
    """``call()`` with librdkafka's error classes applied (module docstring). ``wait(attempt)``
    backs off before a repetition and returns False when the daemon stops; ``abort`` aborts
    the open transaction; ``poll`` serves the producer's callbacks when its queue is full.

    Raises RetriableError (the transaction was aborted, or the daemon is stopping: the batch is
    replayed) or FatalIngestError."""
    attempt = 0
    while True:
        try:
            return call()
        except BufferError:
            attempt += 1
            log.warning("kafka.queue_full", step=what, attempt=attempt)
            poll()
            action = TxnAction.REPEAT
            reason = "the producer's local queue is full"
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            action = action_for(error)
            reason = error.str()
            if action is TxnAction.EXIT:
                raise FatalIngestError(fatal_message(what, error)) from exc
            if action is TxnAction.ABORT:
                abort()
                raise RetriableError(f"Kafka {what} failed ({reason}); aborted, replaying") from exc
            attempt += 1
            log.warning("kafka.txn_retry", step=what, attempt=attempt, error=reason)
        if not wait(attempt):
            abort()
            raise RetriableError(f"stopping while Kafka {what} was retried ({reason})")
