"""The stack's lifecycle: up is idempotent, down leaves no port listening, a taken port is named."""

from __future__ import annotations

import socket

import pytest

from clickstream.errors import StackError
from commands.stack.manager import Stack
from commands.stack.process import port_in_use
from commands.stack.servers import SERVERS

pytestmark = [pytest.mark.integration, pytest.mark.stack_cycle]


def _ports(stack: Stack) -> list[tuple[str, int]]:
    return [(p.host, p.port) for server in SERVERS for p in server.ports(stack.settings)]


def test_up_up_down_up(stack: Stack) -> None:
    """up twice keeps the same pids; down frees every port; a taken port blocks up by name."""
    first = {row.name: row.pid for row in stack.up()}
    second = {row.name: row.pid for row in stack.up()}
    assert first == second
    assert all(first.values())

    assert sorted(stack.down()) == sorted(s.name for s in SERVERS)
    assert [port for port in _ports(stack) if port_in_use(*port)] == []
    assert all(row.pid is None and not row.healthy for row in stack.status())
    assert stack.down() == []  # nothing left to stop

    host, port = stack.settings.kafka.first_broker
    with socket.socket() as squatter:
        # SO_REUSEADDR: connections of the stopped broker may linger in TIME_WAIT on the port.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((host, port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"{port}.*kafka\.bootstrap_servers"):
            stack.up()
    assert all(row.pid is None for row in stack.status())  # nothing half-started

    rows = stack.up()
    assert all(row.healthy for row in rows), rows
    assert {row.name: row.pid for row in rows} != first  # really restarted
