"""The daemon's transactional calls under librdkafka's error classes (ingest/transaction.py):
real KafkaError values, raised by plain functions standing for the producer's calls."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from clickstream.errors import RetriableError
from ingest.transaction import FatalIngestError, TxnAction, abort, action_for, step


def failing(*errors: BaseException, result: str = "done") -> tuple[list[int], object]:
    """A call that raises ``errors`` in turn, then returns ``result``; and its call count."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return calls, call


def kafka(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "broker said so", **flags))


class Recorder:
    """The daemon's side of a step: backoff (True: go on), abort, poll; what was asked."""

    def __init__(self, go_on: bool = True) -> None:
        self.waits: list[int] = []
        self.aborts = 0
        self.polls = 0
        self.go_on = go_on

    def wait(self, attempt: int) -> bool:
        self.waits.append(attempt)
        return self.go_on

    def abort(self) -> None:
        self.aborts += 1

    def poll(self) -> None:
        self.polls += 1


def run(call: object, daemon: Recorder) -> object:
    return step("commit_transaction", call, wait=daemon.wait, abort=daemon.abort, poll=daemon.poll)  # type: ignore[arg-type]


class TestActions:
    @pytest.mark.parametrize(
        ("flags", "action"),
        [
            ({"fatal": True, "retriable": True}, TxnAction.EXIT),
            ({"txn_requires_abort": True, "retriable": True}, TxnAction.ABORT),
            ({"retriable": True}, TxnAction.REPEAT),
            ({}, TxnAction.ABORT),
        ],
    )
    def test_each_class_gets_the_documented_move(
        self, flags: dict[str, bool], action: TxnAction
    ) -> None:
        """Fatal wins over anything; abortable over retriable; an unclassified error aborts."""
        assert action_for(KafkaError(KafkaError._TIMED_OUT, "x", **flags)) is action


class TestStep:
    def test_a_retriable_error_repeats_the_same_call_without_aborting(self) -> None:
        """A commit that timed out (it goes on in the background) is called again, never
        aborted or begun anew: the second call returns its outcome."""
        timed_out = kafka(KafkaError._TIMED_OUT, retriable=True)
        calls, call = failing(timed_out, timed_out)
        daemon = Recorder()
        assert run(call, daemon) == "done"
        assert (len(calls), daemon.waits, daemon.aborts) == (3, [1, 2], 0)

    def test_an_abortable_error_aborts_and_asks_for_a_replay(self) -> None:
        calls, call = failing(kafka(KafkaError._STATE, txn_requires_abort=True))
        daemon = Recorder()
        with pytest.raises(RetriableError, match="aborted, replaying"):
            run(call, daemon)
        assert (len(calls), daemon.aborts, daemon.waits) == (1, 1, [])

    def test_a_fatal_error_exits_naming_the_fix(self) -> None:
        """A fenced producer: the message says another producer has this transactional id."""
        fenced = kafka(KafkaError._FENCED, fatal=True)
        _, call = failing(fenced)
        daemon = Recorder()
        with pytest.raises(FatalIngestError, match=r"own --instance"):
            run(call, daemon)
        assert daemon.aborts == 0

    def test_a_full_local_queue_is_served_then_produced_again(self) -> None:
        calls, call = failing(BufferError("Local: Queue full"), BufferError("Local: Queue full"))
        daemon = Recorder()
        assert run(call, daemon) == "done"
        assert (len(calls), daemon.polls, daemon.aborts) == (3, 2, 0)

    def test_stopping_during_repeats_aborts_and_leaves_the_batch_for_a_replay(self) -> None:
        _, call = failing(kafka(KafkaError._TIMED_OUT, retriable=True))
        daemon = Recorder(go_on=False)
        with pytest.raises(RetriableError, match="stopping"):
            run(call, daemon)
        assert daemon.aborts == 1


class TestAbort:
    def test_a_call_refused_while_an_abort_goes_on_resumes_the_abort(self) -> None:
        """begin_transaction after an abort that timed out fails with _CONFLICT, retriable,
        forever: it must abort (resume the abort), never repeat itself."""
        conflict = KafkaError(
            KafkaError._CONFLICT,
            "Conflicting abort_transaction API call is already in progress",
            retriable=True,
        )
        assert action_for(conflict) is TxnAction.ABORT

    def test_an_abort_that_timed_out_is_repeated_until_done(self) -> None:
        """A 60 s broker freeze left every daemon stuck: the abort timed out (it goes on in
        the background, "retry call to resume"), the daemon went on to begin_transaction and
        was refused forever. The same abort call is now repeated, with the backoff between."""
        timeout = kafka(KafkaError._TIMED_OUT, retriable=True)
        calls, call = failing(timeout, timeout, result="")
        daemon = Recorder()
        abort(call, wait=daemon.wait)  # type: ignore[arg-type]
        assert (len(calls), daemon.waits) == (3, [1, 2])

    def test_no_transaction_to_abort_ends_the_abort(self) -> None:
        calls, call = failing(kafka(KafkaError._STATE), result="")
        abort(call, wait=Recorder().wait)  # type: ignore[arg-type]
        assert len(calls) == 1

    def test_a_fatal_abort_exits_and_stopping_leaves_it_to_the_broker(self) -> None:
        _, fenced = failing(kafka(KafkaError._FENCED, fatal=True), result="")
        with pytest.raises(FatalIngestError, match="abort_transaction failed fatally"):
            abort(fenced, wait=Recorder().wait)  # type: ignore[arg-type]
        calls, timing_out = failing(*[kafka(KafkaError._TIMED_OUT, retriable=True)] * 5, result="")
        abort(timing_out, wait=Recorder(go_on=False).wait)  # type: ignore[arg-type]
        assert len(calls) == 1
