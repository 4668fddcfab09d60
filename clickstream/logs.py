"""structlog configuration, done once at an entry point: JSON off a terminal, console on one.

Third-party libraries (elastic_transport, urllib3, py4j, happybase, thriftpy2) log through stdlib
``logging``; their records go through the same renderer at WARNING and above. Below ``DEBUG`` a
record's traceback becomes one ``error`` field: a client that retries logs one line per attempt,
and the project's own one-line error says what failed. (librdkafka, under confluent-kafka, writes
its own one-line messages to stderr from C, outside ``logging``.)
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Loggers that only repeat what another line says, shown from DEBUG: elastic_transport's node
# pool logs "has failed N times" beside the transport's "Retrying request" for the same failure.
_REPEATS = ("elastic_transport.node_pool",)


class _Stderr:
    """``sys.stderr`` as it is at each write. A stream bound once goes stale when something
    swaps it (pytest's capture closes the one a test saw), and logging then raises."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# The name of the root handler configure_logging installs (and replaces when called again).
_HANDLER = "clickstream"


def _exception(exc_info: object) -> BaseException | None:
    """The exception an ``exc_info`` value carries (a ``sys.exc_info()`` tuple or the exception)."""
    if isinstance(exc_info, tuple):
        exc_info = exc_info[1] if len(exc_info) > 1 else None
    return exc_info if isinstance(exc_info, BaseException) else None


def _error_without_traceback(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info`` and ``stack_info`` with one ``error`` field: type and message."""
    exc = _exception(event_dict.pop("exc_info", None))
    event_dict.pop("stack_info", None)
    if exc is not None:
        event_dict.setdefault("error", " ".join(f"{type(exc).__name__}: {exc}".split()))
    return event_dict


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Route structlog (and stdlib logging) to stderr; ``json=None`` picks by terminal."""
    use_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        # Not cached: a logger follows a later configure() (tests, a second entry point); one
        # line per batch makes the cost nothing.
        cache_logger_on_first_use=False,
    )
    _configure_libraries(numeric, renderer, timestamper)


def _configure_libraries(numeric: int, renderer: Processor, timestamper: Processor) -> None:
    """Render every stdlib record through *renderer*: WARNING and up, tracebacks from DEBUG."""
    debug = numeric <= logging.DEBUG
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    if not debug:
        pre_chain.append(_error_without_traceback)
    handler = logging.StreamHandler(_Stderr())
    handler.set_name(_HANDLER)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=pre_chain,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    for name in _REPEATS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.ERROR)
