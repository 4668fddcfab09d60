"""``clickstream serve``: the query as an HTTP JSON API (FastAPI), with its OpenAPI schema, and
the dashboard that reads it.

GET /v1/metrics answers what ``clickstream query`` answers; GET /v1/series gives clicks per
bucket for the dashboard's graph; GET / is the dashboard (serving/dashboard/). A bad parameter
is a 422 whose body names the parameter and the fix (``bad_parameter``; ``bad_range`` for the
rules across parameters that the schema cannot state); Elasticsearch unreachable is a 503;
never a 5xx for input. The schema states every parameter's real constraints, so a client
generated from it sends only what the API accepts (checked by a schema fuzzer in the tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
import structlog
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from clickstream import __version__
from clickstream.errors import ConfigError
from clickstream.security import is_loopback
from clickstream.settings import Settings
from clickstream.times import iso
from serving.access import key_name, valid_hash
from serving.answer import answer_dict
from serving.dashboard import DASHBOARD_DIR, missing_assets
from serving.errors import BackendUnavailableError, QueryError, RangeRuleError
from serving.guard import ApiMetrics, Guard, error_body
from serving.params import EXAMPLE_TIME, GROUP_BY_CHOICES, TIME_PATTERN, build_query
from serving.series import BUCKET_CHOICES, BUCKETS, bucket_of
from serving.service import MetricsService, Series

#: The fix a 422 suggests for each parameter (FastAPI's own checks say only what is wrong).
HINTS = {
    "from": f"give an ISO-8601 time with a UTC offset, e.g. {EXAMPLE_TIME}",
    "to": f"give an ISO-8601 time with a UTC offset after from, e.g. {EXAMPLE_TIME}",
    "url": "give a prefix of the normalised URL, e.g. https://shop.example/products",
    "country": "give an ISO 3166-1 alpha-2 code, e.g. DE",
    "group_by": f"use one of {', '.join(GROUP_BY_CHOICES)}",
    "top": "give a whole number from 1 to serving.max_top",
    "bucket": f"use one of {', '.join(BUCKET_CHOICES)}",
}


class UniqueUsersOut(BaseModel):
    """Distinct users: exact (bounds equal the value) or an HLL estimate with its bounds."""

    value: int
    exact: bool
    lower_bound: int
    upper_bound: int
    confidence: float
    source: str


class MetricsOut(BaseModel):
    """Merged measures of a group or of the whole selection."""

    clicks: int
    bot_clicks: int
    bot_clicks_by_rule: dict[str, int] = Field(
        description="Bot clicks by the rule that flagged them: uap-core, crawler-user-agents, "
        "tools, and unknown for bots stored before the rule was recorded; they add up to "
        "bot_clicks."
    )
    unique_users: UniqueUsersOut
    time_spent_sum_ms: int
    time_spent_count: int
    clicks_without_time_spent: int
    avg_time_spent_ms: float | None
    documents: int


class GroupOut(MetricsOut):
    """One group: its key (null where not grouped by) and its measures."""

    url: str | None
    country: str | None


class AnswerOut(BaseModel):
    """The answer: range, boundary, freshness, late events, total and groups."""

    range: dict[str, str]
    filters: dict[str, str | None]
    group_by: list[str]
    top: int | None
    boundary: str | None
    speed_until: str | None
    late_events_waiting: int | None
    late_events_in_range: int | None
    total: MetricsOut
    group_count: int
    groups: list[GroupOut]
    notes: list[str]


class PointOut(BaseModel):
    """One bucket of a series: clicks and bot clicks of the batch and speed parts."""

    start: str
    start_ms: int
    clicks: int
    bot_clicks: int
    batch_clicks: int
    batch_bot_clicks: int
    speed_clicks: int
    speed_bot_clicks: int


class SeriesOut(BaseModel):
    """Clicks per bucket over a range, the boundary and the speed layer's reach."""

    range: dict[str, str]
    filters: dict[str, str | None]
    bucket: str
    bucket_ms: int
    boundary: str | None
    boundary_ms: int | None
    speed_until: str | None
    speed_until_ms: int | None
    late_events_waiting: int | None
    late_events_in_range: int | None
    points: list[PointOut]


class ErrorOut(BaseModel):
    """A refused request: which parameter, what is wrong and how to fix it."""

    error: str
    parameter: str | None = None
    message: str


FROM = Query(
    alias="from",
    pattern=TIME_PATTERN,
    description="Range start, ISO-8601 with a UTC offset (inclusive), from 1970 on.",
    examples=[EXAMPLE_TIME],
)
TO = Query(
    alias="to",
    pattern=TIME_PATTERN,
    description="Range end, ISO-8601 with a UTC offset (exclusive), after from, at most "
    "serving.max_range_days later (a bad_range 422 otherwise).",
    examples=["2026-11-22T11:00:00Z"],
)
COUNTRY = Query(None, pattern="^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code (ZZ: unknown).")


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    parameter = str(first["loc"][-1]) if first.get("loc") else "query"
    hint = HINTS.get(parameter, "see /openapi.json")
    return error_body(
        422, "bad_parameter", f"{parameter}: {first['msg']}; {hint}", parameter=parameter
    )


def series_dict(series: Series) -> dict[str, Any]:
    """A series as plain data (the response body of /v1/series)."""
    query = series.query
    return {
        "range": {"from": iso(query.from_ms), "to": iso(query.to_ms)},
        "filters": {"url_prefix": query.url_prefix, "country": query.country},
        "bucket": series.bucket,
        "bucket_ms": BUCKETS[series.bucket],
        "boundary": None if series.boundary_ms is None else iso(series.boundary_ms),
        "boundary_ms": series.boundary_ms,
        "speed_until": None if series.speed_until_ms is None else iso(series.speed_until_ms),
        "speed_until_ms": series.speed_until_ms,
        "late_events_waiting": series.late.waiting,
        "late_events_in_range": series.late.touching_range,
        "points": [
            {
                "start": iso(p.start_ms),
                "start_ms": p.start_ms,
                "clicks": p.clicks,
                "bot_clicks": p.bot_clicks,
                "batch_clicks": p.batch_clicks,
                "batch_bot_clicks": p.batch_bot_clicks,
                "speed_clicks": p.speed_clicks,
                "speed_bot_clicks": p.speed_bot_clicks,
            }
            for p in series.points
        ],
    }


class Unauthorized(Exception):  # noqa: N818 - an HTTP outcome, not a fault
    """A data request without a valid API key."""


#: The refusals a data route documents (all in the ErrorOut shape).
DATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (401, 422, 429, 503)
}
BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
log = structlog.get_logger(__name__)


def _json(body: dict[str, Any], limit: int, parameter: str) -> Response:
    """``body`` as a JSON response, refused past ``limit`` bytes (serving.max_response_bytes)."""
    raw = orjson.dumps(body)
    if len(raw) > limit:
        raise QueryError(
            parameter,
            f"the answer is {len(raw)} bytes, more than serving.max_response_bytes = {limit}",
            "ask for fewer groups (top) or a narrower selection",
        )
    return Response(raw, media_type="application/json")


def create_app(settings: Settings, service: MetricsService | None = None) -> FastAPI:
    """The API over ``service`` (by default one built from ``settings``, closed on shutdown)."""
    keys = settings.serving.api_keys
    bad = sorted(name for name, stored in keys.items() if not valid_hash(stored))
    if bad:
        raise ConfigError(
            f"serving.api_keys: {', '.join(bad)} is not sha256:<64 hex digits>; make keys "
            "with `clickstream api-key create NAME` and store the hash it prints"
        )
    metrics_service = service or MetricsService(settings)
    api_metrics = ApiMetrics()
    limit = settings.serving.max_response_bytes

    def authorized(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        header: Annotated[str | None, Depends(API_KEY)],
    ) -> None:
        """Every data route: a known key, when keys are configured."""
        if not keys:
            return
        presented = bearer.credentials if bearer is not None else header
        if key_name(presented, keys) is None:
            api_metrics.rejections.labels("unauthorized").inc()
            raise Unauthorized

    url_query = Query(
        None,
        max_length=settings.serving.max_url_prefix_bytes // 4,  # 4 bytes at most per character
        description="Prefix of the normalised URL (at most serving.max_url_prefix_bytes of UTF-8).",
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        metrics_service.close()

    app = FastAPI(
        title="clickstream metrics",
        version=__version__,
        description="Clicks, unique users and time spent per URL and country over any time "
        "range: exact batch views before the time boundary merged with fresh speed views "
        "after it.",
        lifespan=lifespan,
    )
    app.middleware("http")(
        Guard(settings.serving.max_concurrent, settings.serving.request_timeout_s, api_metrics)
    )
    guarded = [Depends(authorized)]

    @app.exception_handler(Unauthorized)
    async def on_unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        return error_body(
            401,
            "unauthorized",
            "a valid API key is required: send `Authorization: Bearer <key>` (keys are made "
            "by `clickstream api-key create NAME`)",
            {"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(QueryError)
    async def on_query_error(_: Request, exc: QueryError) -> JSONResponse:
        kind = "bad_range" if isinstance(exc, RangeRuleError) else "bad_parameter"
        return error_body(422, kind, str(exc), parameter=exc.parameter)

    @app.exception_handler(BackendUnavailableError)
    async def on_unavailable(_: Request, exc: BackendUnavailableError) -> JSONResponse:
        # The details (addresses, the client's error) go to the log, not to the client.
        log.warning("api.unavailable", error=str(exc))
        return error_body(
            503,
            "unavailable",
            "the view store (Elasticsearch) is unreachable or overloaded; retry shortly",
        )

    @app.get(
        "/v1/metrics",
        response_model=AnswerOut,
        responses=DATA_RESPONSES,
        summary="Clicks, unique users and time spent over a time range",
        dependencies=guarded,
    )
    def get_metrics(
        *,
        since: str = FROM,
        until: str = TO,
        url: str | None = url_query,
        country: str | None = COUNTRY,
        group_by: str | None = Query(
            None,
            description="Group by url, country or url,country (default: only the total).",
            json_schema_extra={"enum": list(GROUP_BY_CHOICES)},
        ),
        top: int | None = Query(
            None,
            ge=1,
            le=settings.serving.max_top,
            description="Keep the N groups with the most clicks.",
        ),
    ) -> Response:
        query = build_query(
            settings.serving,
            since=since,
            until=until,
            url=url,
            country=country,
            group_by=group_by,
            top=top,
        )
        return _json(answer_dict(metrics_service.query(query)), limit, "top")

    @app.get(
        "/v1/series",
        response_model=SeriesOut,
        responses=DATA_RESPONSES,
        summary="Clicks per minute, hour or day over a time range, batch and speed apart",
        dependencies=guarded,
    )
    def get_series(
        *,
        since: str = FROM,
        until: str = TO,
        url: str | None = url_query,
        country: str | None = COUNTRY,
        bucket: str = Query(
            "auto",
            description="Bucket size; auto: minutes up to 3 hours, hours up to 3 days, then "
            "days. At most 1,500 buckets (a bad_range 422 beyond).",
            json_schema_extra={"enum": list(BUCKET_CHOICES)},
        ),
    ) -> Response:
        query = build_query(settings.serving, since=since, until=until, url=url, country=country)
        chosen = bucket_of(bucket, query.from_ms, query.to_ms)
        return _json(series_dict(metrics_service.series(query, chosen)), limit, "bucket")

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False, response_model=None)
    def dashboard() -> FileResponse | PlainTextResponse:
        missing = missing_assets()
        if missing:
            message = (
                f"The dashboard's chart library is not built ({', '.join(missing)} missing "
                "in serving/dashboard/static/vendor): run `make assets` in the checkout, or "
                "install a wheel built after it. The API works without it: /docs."
            )
            return PlainTextResponse(message, status_code=503)
        return FileResponse(DASHBOARD_DIR / "index.html")

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")

    @app.get("/healthz", summary="Whether the API can reach Elasticsearch")
    def healthz() -> JSONResponse:
        ok = metrics_service.healthy()
        body = {"status": "ok" if ok else "unavailable", "elasticsearch": ok}
        return JSONResponse(status_code=200 if ok else 503, content=body)

    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API with uvicorn until interrupted. Without API keys it serves only on a
    loopback address, unless ``serving.allow_open`` says a gateway in front authenticates."""
    import uvicorn  # noqa: PLC0415 - only the serve command needs the server

    bind = host or settings.serving.host
    if not settings.serving.api_keys:
        if not is_loopback(bind) and not settings.serving.allow_open:
            raise ConfigError(
                f"refusing to serve the API without keys on {bind}: create one with "
                "`clickstream api-key create NAME` and set serving.api_keys, or bind a "
                "loopback address, or set serving.allow_open=true behind an authenticating "
                "gateway"
            )
        log.warning(
            "api.open", host=bind, hint="no serving.api_keys: anyone who can connect can query"
        )
    uvicorn.run(
        create_app(settings), host=bind, port=port or settings.serving.port, log_level="info"
    )
