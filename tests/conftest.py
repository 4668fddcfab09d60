"""Test-session wiring shared by unit and integration tests."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the stack up/down cycle last: it takes down the stack every other test uses."""
    items.sort(key=lambda item: item.get_closest_marker("stack_cycle") is not None)
