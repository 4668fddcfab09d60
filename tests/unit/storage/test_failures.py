"""Classifying HBase write failures: a missing family or table is configuration, the rest an
outage; the server's exception class is read from the Thrift error, never its stack trace."""

from __future__ import annotations

import happybase  # noqa: F401 - loads Hbase_thrift
from Hbase_thrift import IllegalArgument
from Hbase_thrift import IOError as HBaseIOError
from thriftpy2.transport import TTransportException

from clickstream.errors import Failure
from storage.failures import (
    classify_hbase,
    families_of,
    missing_families_message,
    server_exceptions,
)

NO_FAMILY = (
    b"org.apache.hadoop.hbase.client.RetriesExhaustedWithDetailsException: Failed 52 actions: "
    b"org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException: Column family geo_data "
    b"does not exist in region t,,1.fd49. in table 't'\n\tat org.apache.hadoop.hbase."
    b"regionserver.RSRpcServices.doBatchOp(RSRpcServices.java:1124)\n"
)
REGION_MOVED = (
    b"org.apache.hadoop.hbase.client.RetriesExhaustedWithDetailsException: Failed 3 actions: "
    b"org.apache.hadoop.hbase.NotServingRegionException: region t,,1 is not online\n\tat "
    b"org.apache.hadoop.hbase.regionserver.TableNotFoundExceptionThrower.x(Y.java:1)\n"
)


class TestServerExceptions:
    def test_reads_the_nested_java_classes_outermost_first(self) -> None:
        """The message's exception classes, cause included, in order."""
        assert server_exceptions(HBaseIOError(message=NO_FAMILY)) == (
            "RetriesExhaustedWithDetailsException",
            "NoSuchColumnFamilyException",
        )

    def test_ignores_the_servers_stack_trace(self) -> None:
        """A class named in a stack frame is not the error."""
        assert "TableNotFoundException" not in server_exceptions(HBaseIOError(message=REGION_MOVED))

    def test_a_generic_exception_carries_none(self) -> None:
        """Text in an exception that is not the Thrift IOError is never read."""
        assert server_exceptions(RuntimeError(NO_FAMILY.decode())) == ()


class TestClassifyHBase:
    def test_a_missing_family_is_configuration(self) -> None:
        """NoSuchColumnFamilyException: no retry can cure it."""
        assert classify_hbase(HBaseIOError(message=NO_FAMILY)) is Failure.CONFIGURATION

    def test_a_missing_table_is_configuration(self) -> None:
        """TableNotFoundException as the server's cause."""
        error = HBaseIOError(message=b"org.apache.hadoop.hbase.TableNotFoundException: t")
        assert classify_hbase(error) is Failure.CONFIGURATION

    def test_an_illegal_argument_is_configuration(self) -> None:
        """The server refuses the request itself as malformed."""
        assert classify_hbase(IllegalArgument(message=b"bad column")) is Failure.CONFIGURATION

    def test_a_region_in_transition_is_retriable(self) -> None:
        """Any other server error (a region moving, a server restarting) is an outage."""
        assert classify_hbase(HBaseIOError(message=REGION_MOVED)) is Failure.RETRIABLE

    def test_transport_errors_are_retriable(self) -> None:
        """Refused connections, closed transports and timeouts are outages."""
        for error in (
            TTransportException(message="Could not connect"),
            ConnectionRefusedError(111, "refused"),
            TimeoutError("timed out"),
        ):
            assert classify_hbase(error) is Failure.RETRIABLE

    def test_the_text_of_a_generic_exception_is_not_read(self) -> None:
        """A RuntimeError that happens to mention the class stays retriable."""
        assert classify_hbase(RuntimeError("NoSuchColumnFamilyException")) is Failure.RETRIABLE


class TestMessages:
    def test_families_of_columns(self) -> None:
        """``family:qualifier`` names give their families."""
        assert families_of([b"geo_data:country", b"click_data:ts", b"geo_data:lat"]) == {
            "geo_data",
            "click_data",
        }

    def test_the_message_names_table_family_and_fix(self) -> None:
        """The operator reads what is missing, what is there, and both ways out."""
        message = missing_families_message("clicks", ["geo_data"], ["click_data"])
        assert message.startswith("HBase table clicks has no column family geo_data (it has ")
        assert "alter 'clicks', {NAME => 'geo_data'" in message
        assert "clickstream schema create" in message
