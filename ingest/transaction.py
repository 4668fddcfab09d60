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

``abort_transaction`` itself follows the same rule (:func:`abort`): one that timed out goes on in
the background and is repeated until done; starting anything else meanwhile fails with
"Conflicting abort_transaction API call is already in progress", forever.

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
    error may also say retriable). A call refused because another one is still in progress
    (``_CONFLICT``: an abort that timed out goes on in the background) is never repeated as
    it is: the abort must be resumed first."""
    if error.fatal():
        return TxnAction.EXIT
    if error.txn_requires_abort() or error.code() == KafkaError._CONFLICT:
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


def abort(call: Callable[[], None], *, wait: Callable[[int], bool]) -> None:
    """``abort_transaction`` until it is done. An abort that timed out goes on in the
    background ("retry call to resume"): it is a retriable error, and the *same* call is
    repeated after ``wait(attempt)``; anything else begun meanwhile is refused with _CONFLICT.
    A fatal error raises FatalIngestError; any other (no transaction open) ends it: the next
    ``begin_transaction`` tells, and the broker aborts a transaction left open at its timeout.
    Returns early only when ``wait`` says the daemon stops."""
    attempt = 0
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise FatalIngestError(fatal_message("abort_transaction", error)) from exc
            if not error.retriable():
                log.warning("kafka.abort_failed", error=error.str())
                return
            attempt += 1
            log.warning(
                "kafka.txn_retry", step="abort_transaction", attempt=attempt, error=error.str()
            )
        if not wait(attempt):
            return


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
