"""A local stack for a test session: reused if it is up, else started and stopped at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from clickstream.settings import Settings
from commands.stack.manager import Stack


@contextmanager
def running(settings: Settings, label: str) -> Iterator[Stack]:
    """The stack of ``settings``, up. One this started is stopped at the end (by its pid files),
    unless CLICKSTREAM_KEEP_STACK=1 (handy while iterating); one found up is left running."""
    stack = Stack(settings, progress=lambda line: print(f"[{label}] {line}", flush=True))
    was_up = stack.is_up()
    if not was_up:
        stack.up()
    yield stack
    if not was_up and os.environ.get("CLICKSTREAM_KEEP_STACK") != "1":
        stack.down()
