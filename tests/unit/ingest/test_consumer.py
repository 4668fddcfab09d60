"""The consume loop's error rule: a fatal consumer error ends the daemon, naming the fix."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from structlog.testing import capture_logs

from ingest.consumer import check_consume_error
from ingest.transaction import FatalIngestError


def test_a_fatal_consumer_error_ends_the_daemon_naming_the_fix() -> None:
    """A member fenced by another with its instance id cannot consume again: idling on while
    /healthz said ok hid it; now the daemon exits 1 and says what to change."""
    as_delivered = KafkaError(  # code _FATAL, fatal flag unset: as librdkafka hands it over
        KafkaError._FATAL,
        "Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id",
    )
    flagged = KafkaError(KafkaError._FENCED, "fenced by a newer member", fatal=True)
    for error in (as_delivered, flagged):
        with pytest.raises(FatalIngestError, match=r"Kafka consume failed fatally: .*--instance"):
            check_consume_error(error)


def test_a_transient_consumer_error_is_logged_and_the_loop_goes_on() -> None:
    """librdkafka recovers from the others by itself (a broker down, a transport error)."""
    error = KafkaError(KafkaError._TRANSPORT, "broker went away")
    with capture_logs() as logs:
        check_consume_error(error)
    assert [entry["event"] for entry in logs] == ["kafka.consume_error"]
    assert "broker went away" in logs[0]["error"]
