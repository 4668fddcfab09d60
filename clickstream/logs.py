"""structlog configuration, done once at an entry point: JSON off a terminal, console on one."""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """``sys.stderr`` as it is at each write. A stream bound once goes stale when something
    swaps it (pytest's capture closes the one a test saw), and logging then raises."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Route structlog (and stdlib logging) to stderr; ``json=None`` picks by terminal."""
    use_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Third-party libraries (elasticsearch, urllib3, py4j) log through stdlib: keep them quiet.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=_Stderr())
