"""`clickstream query`, `clickstream serve` and `clickstream api-key`: the serving layer's
subcommands.

Registered by commands/cli.py; only argparse is imported here, so `--help` stays fast (the
query machinery and FastAPI load when a command runs).
"""

from __future__ import annotations

import argparse
import textwrap
from typing import TypeAlias

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from serving.errors import QueryError

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the arguments, answer the query, print it in the chosen format."""
    from serving.params import build_query  # noqa: PLC0415
    from serving.render import render  # noqa: PLC0415
    from serving.service import MetricsService  # noqa: PLC0415

    try:
        query = build_query(
            settings.serving,
            since=args.since,
            until=args.to,
            url=args.url,
            country=args.country,
            group_by=args.group_by,
            top=args.top,
        )
        with MetricsService(settings) as service:
            answer = service.query(query)
    except QueryError as exc:
        raise ConfigError(exc.for_cli()) from None
    print(render(answer, args.format))
    return 0


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP API until interrupted."""
    from serving.api import serve  # noqa: PLC0415

    serve(settings, host=args.host, port=args.port)
    return 0


def run_api_key_create(args: argparse.Namespace, settings: Settings) -> int:
    """Print a new API key once, and the hash the API's settings store."""
    from serving.access import key_hash, new_key  # noqa: PLC0415

    name = args.name
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"api-key name {name!r}: use letters, digits, - and _ only")
    if name in settings.serving.api_keys:
        print(f"note: {name} already has a key; the one below replaces it once you store it")
    key = new_key()
    stored = key_hash(key)
    print(f"API key {name} (shown only now; give it to the client, keep it in a secret store):")
    print(f"  {key}")
    print("The API's settings keep only its hash; add it beside the keys already there:")
    print("  TOML:")
    print("    [serving.api_keys]")
    print(f'    {name} = "{stored}"')
    print("  environment:")
    print(f'    CLICKSTREAM_SERVING__API_KEYS=\'{{"{name}": "{stored}"}}\'')
    print(f"Clients send it as: Authorization: Bearer {key[:6]}...")
    return 0


def add_api_key(commands: Subcommands) -> None:
    """`clickstream api-key create NAME`."""
    api_key = commands.add_parser(
        "api-key",
        help="API keys of the HTTP API",
        description="Keys for `clickstream serve`: the API accepts a request whose "
        "`Authorization: Bearer <key>` (or X-API-Key) matches one of serving.api_keys, which "
        "holds only sha256 hashes. With no keys the API is open and serves on loopback only.",
    )
    actions = api_key.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="make a key: prints it once, and the hash to store in serving.api_keys",
        epilog="example: clickstream api-key create dashboard",
    )
    create.add_argument("name", help="a name for the key's holder (letters, digits, - and _)")
    create.set_defaults(handler=run_api_key_create)


QUERY_EPILOG = """examples:
  clickstream query --from 2026-11-22T10:00Z --to 2026-11-22T11:00Z
      the total of one hour (unique users exact once the batch has passed it)
  clickstream query --from 2026-11-22T00:00Z --to 2026-11-23T00:00Z --group-by url --top 10
      the ten most clicked URLs of a day
  clickstream query --from 2026-11-22T10:00Z --to 2026-11-22T10:05Z \\
      --url https://shop.example/products --country de --group-by url,country --format json
      the last minutes, from the speed layer, as JSON
  clickstream query --from 2026-11-20T00:00Z --to 2026-11-22T00:00Z --group-by country --format csv

Unique users are exact when the range is one whole hour behind the time boundary and the group
is one URL x country, one URL (all countries), one country (all URLs) or everything; otherwise
they are an HLL estimate with bounds at two standard deviations (about 95 %)."""


def add_query(commands: Subcommands) -> None:
    """`clickstream query`."""
    query = commands.add_parser(
        "query",
        help="clicks, unique users and time spent over a time range (batch + speed views)",
        description=textwrap.fill(
            "Reads the views alias (batch views before the time boundary, speed views after "
            "it) and merges them: clicks, bot clicks, time spent summed; unique users from the "
            "union of HLL sketches (or exact counts where stored). Every answer names the "
            "range, the boundary, how far the speed layer reaches and how many late events "
            "wait for the next batch run.",
            width=96,
        ),
        epilog=QUERY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query.add_argument(
        "--from", dest="since", required=True, metavar="ISO", help="range start (inclusive)"
    )
    query.add_argument("--to", required=True, metavar="ISO", help="range end (exclusive)")
    query.add_argument("--url", metavar="PREFIX", help="only URLs starting with PREFIX")
    query.add_argument("--country", metavar="CC", help="only this ISO country code (ZZ: unknown)")
    query.add_argument(
        "--group-by",
        choices=["url", "country", "url,country"],
        metavar="{url|country|url,country}",
        help="one line per group (default: only the total)",
    )
    query.add_argument("--top", type=int, metavar="N", help="keep the N most clicked groups")
    query.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="default: table"
    )
    query.set_defaults(handler=run_query)


def add_serve(commands: Subcommands) -> None:
    """`clickstream serve`."""
    serve = commands.add_parser(
        "serve",
        help="the dashboard (/) and the query as an HTTP JSON API (/v1/metrics, /v1/series)",
        description="Serves the dashboard at / and answers GET "
        "/v1/metrics?from=&to=&url=&country=&group_by=&top= like `clickstream query --format "
        "json`, and /v1/series (clicks per bucket); the OpenAPI schema is at /openapi.json (and "
        "a browsable one at /docs); /healthz says whether Elasticsearch answers; /metrics has "
        "the API's Prometheus metrics. A bad parameter is a 422 naming it; Elasticsearch down "
        "is a 503. With serving.api_keys set, /v1/ needs `Authorization: Bearer <key>` "
        "(`clickstream api-key create`); without keys it serves on a loopback address only.",
        epilog="example: clickstream serve --port 8080 & curl "
        "'http://127.0.0.1:8080/v1/metrics?from=2026-11-22T10:00Z&to=2026-11-22T11:00Z"
        "&group_by=country&top=5'",
    )
    serve.add_argument("--host", help="bind address (default serving.host)")
    serve.add_argument("--port", type=int, help="port (default serving.port)")
    serve.set_defaults(handler=run_serve)
