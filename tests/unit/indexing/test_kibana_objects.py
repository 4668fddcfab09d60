"""The Kibana saved objects as files: structure, metric definitions, references, import script.

No Kibana runs here (it cannot be installed on this machine): the import script's HTTP side is
checked against a small local stand-in that records what it receives and answers the way the
saved-objects import API is documented to answer. It is not a Kibana.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from clickstream.settings import ElasticsearchSettings
from indexing.templates import template_bodies
from indexing.views import ViewNames
from tests.kibana import (
    BinaryOp,
    FieldAgg,
    Number,
    SavedObject,
    SavedObjectError,
    by_type,
    dashboard_panels,
    evaluate,
    lens_layers,
    load_ndjson,
    parse_formula,
    parse_ndjson,
    shown_columns,
)
from tests.paths import ROOT

NDJSON = ROOT / "deploy" / "kibana" / "clickstream.ndjson"
IMPORT = ROOT / "deploy" / "kibana" / "import.sh"

LENS_IDS = {
    "clickstream-top-urls",
    "clickstream-clicks-by-country",
    "clickstream-avg-time-per-url",
    "clickstream-clicks-over-time",
    "clickstream-bot-share",
}


def _sum(name: str) -> FieldAgg:
    return FieldAgg("sum", name)


@pytest.fixture(scope="module")
def objects() -> list[SavedObject]:
    """The committed saved objects."""
    return load_ndjson(NDJSON)


def _lens(objects: list[SavedObject], obj_id: str) -> SavedObject:
    return next(obj for obj in by_type(objects, "lens") if obj.id == obj_id)


class TestFile:
    def test_types_ids_and_migration_versions(self, objects: list[SavedObject]) -> None:
        """One data view, five Lens objects, one dashboard; unique ids; versions Kibana 9
        migrates from (lens 8.9.0, data view 8.0.0, dashboard model version 2)."""
        assert [obj.type for obj in objects] == ["index-pattern"] + ["lens"] * 5 + ["dashboard"]
        assert len({obj.id for obj in objects}) == len(objects)
        versions = {}
        for line in NDJSON.read_text().splitlines():
            raw = json.loads(line)
            versions[raw["type"]] = (raw["coreMigrationVersion"], raw["typeMigrationVersion"])
        assert versions == {
            "index-pattern": ("8.8.0", "8.0.0"),
            "lens": ("8.8.0", "8.9.0"),
            "dashboard": ("8.8.0", "10.2.0"),
        }

    def test_data_view_is_the_alias_with_time_field_start(self, objects: list[SavedObject]) -> None:
        """The data view's title is the default alias and its time field is `start`."""
        (data_view,) = by_type(objects, "index-pattern")
        assert data_view.title == ViewNames("clickstream").alias == "clickstream-views"
        assert data_view.attributes["timeFieldName"] == "start"

    def test_bad_line_names_its_number(self) -> None:
        """A line that is not JSON is reported with its line number."""
        with pytest.raises(SavedObjectError, match="line 2"):
            parse_ndjson('{"type":"x","id":"a","attributes":{},"references":[]}\n{oops\n')


class TestDashboard:
    def test_references_exactly_the_five_visualisations(self, objects: list[SavedObject]) -> None:
        """Every panel resolves through `<panelIndex>:panel_<panelIndex>` to one of the five
        Lens objects, each once, and the dashboard has no other reference."""
        (dashboard,) = by_type(objects, "dashboard")
        panels = dashboard_panels(dashboard)
        assert sorted(panel.ref.id for panel in panels) == sorted(LENS_IDS)
        assert {panel.ref.type for panel in panels} == {"lens"}
        assert len(dashboard.references) == len(panels) == 5
        assert {obj.id for obj in by_type(objects, "lens")} == LENS_IDS

    def test_panels_fit_the_grid_without_overlap(self, objects: list[SavedObject]) -> None:
        """Panels lie inside the 48-column grid and no two share a cell."""
        (dashboard,) = by_type(objects, "dashboard")
        cells: set[tuple[int, int]] = set()
        for panel in json.loads(dashboard.attributes["panelsJSON"]):
            grid = panel["gridData"]
            assert grid["i"] == panel["panelIndex"]
            assert grid["x"] >= 0
            assert grid["x"] + grid["w"] <= 48
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & mine, panel["panelIndex"]
            cells |= mine

    def test_attributes_are_in_the_dashboard_schema(self, objects: list[SavedObject]) -> None:
        """Only attributes of Kibana's dashboard schema v1 (unknowns forbidden there), as in
        src/platform/plugins/shared/dashboard/server/dashboard_saved_object/schema/v1/v1.ts."""
        (dashboard,) = by_type(objects, "dashboard")
        schema_v1 = {
            "title",
            "description",
            "kibanaSavedObjectMeta",
            "timeRestore",
            "timeFrom",
            "timeTo",
            "refreshInterval",
            "controlGroupInput",
            "panelsJSON",
            "optionsJSON",
            "hits",
            "version",
        }
        assert set(dashboard.attributes) <= schema_v1
        json.loads(dashboard.attributes["optionsJSON"])
        json.loads(dashboard.attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])


class TestVisualisations:
    def test_every_layer_reads_the_data_view(self, objects: list[SavedObject]) -> None:
        """Each Lens layer's reference points at the data view in the same file."""
        (data_view,) = by_type(objects, "index-pattern")
        for obj in by_type(objects, "lens"):
            assert [layer.data_view_id for layer in lens_layers(obj)] == [data_view.id]

    def test_drawn_columns_are_the_computed_columns(self, objects: list[SavedObject]) -> None:
        """What the chart draws is exactly the buckets and metrics of its layer."""
        for obj in by_type(objects, "lens"):
            (layer,) = lens_layers(obj)
            computed = {b.column_id for b in layer.buckets} | {m.column_id for m in layer.metrics}
            assert shown_columns(obj) == computed, obj.id

    def test_metrics_follow_the_design_definitions(self, objects: list[SavedObject]) -> None:
        """Top URLs, countries and time series sum clicks; average time spent is a ratio of
        sums; bot share is bots over humans plus bots."""
        expected = {
            "clickstream-top-urls": ([("url", "terms")], {"clicks": _sum("clicks")}),
            "clickstream-clicks-by-country": (
                [("country", "terms")],
                {"clicks": _sum("clicks")},
            ),
            "clickstream-clicks-over-time": (
                [("start", "date_histogram")],
                {"clicks": _sum("clicks")},
            ),
            "clickstream-avg-time-per-url": (
                [("url", "terms")],
                {
                    "avg_time_spent": BinaryOp(
                        "divide", _sum("time_spent_sum_ms"), _sum("time_spent_count")
                    ),
                    "clicks": _sum("clicks"),
                    "timed_clicks": _sum("time_spent_count"),
                    "untimed_clicks": BinaryOp(
                        "subtract", _sum("clicks"), _sum("time_spent_count")
                    ),
                },
            ),
            "clickstream-bot-share": (
                [],
                {
                    "bot_share": BinaryOp(
                        "divide",
                        _sum("bot_clicks"),
                        BinaryOp("add", _sum("clicks"), _sum("bot_clicks")),
                    ),
                    "bot_clicks": _sum("bot_clicks"),
                },
            ),
        }
        for obj in by_type(objects, "lens"):
            (layer,) = lens_layers(obj)
            buckets = [(b.field, b.operation) for b in layer.buckets]
            metrics = {m.column_id: m.expr for m in layer.metrics}
            assert (buckets, metrics) == expected[obj.id], obj.id

    def test_only_sums_of_additive_fields(self, objects: list[SavedObject]) -> None:
        """View documents are pre-aggregated: every metric is a sum, never over a per-document
        average or a per-document distinct count (those do not add up)."""
        for obj in by_type(objects, "lens"):
            (layer,) = lens_layers(obj)
            metric_uses = layer.field_uses() - {(b.field, b.operation) for b in layer.buckets}
            assert {operation for _, operation in metric_uses} == {"sum"}, obj.id
            assert not {name for name, _ in metric_uses} & {
                "avg_time_spent_ms",
                "unique_users",
                "users_sketch",
            }, obj.id

    def test_fields_are_in_the_view_mapping(self, objects: list[SavedObject]) -> None:
        """Every field used is a property of both view templates (the live check is in the
        integration test)."""
        bodies = template_bodies(ElasticsearchSettings())
        for body in bodies.values():
            properties = body["template"]["mappings"]["properties"]
            for obj in by_type(objects, "lens"):
                (layer,) = lens_layers(obj)
                assert {name for name, _ in layer.field_uses()} <= set(properties), obj.id

    def test_formula_text_must_match_its_hidden_columns(self, objects: list[SavedObject]) -> None:
        """A formula edited by hand without its hidden columns is refused, not trusted."""
        avg = _lens(objects, "clickstream-avg-time-per-url")
        attributes = copy.deepcopy(dict(avg.attributes))
        layer = next(iter(attributes["state"]["datasourceStates"]["formBased"]["layers"].values()))
        layer["columns"]["avg_time_spent"]["params"]["formula"] = "average(avg_time_spent_ms)"
        edited = SavedObject(avg.type, avg.id, attributes, avg.references)
        with pytest.raises(SavedObjectError, match="differs from its hidden columns"):
            lens_layers(edited)

    def test_unsupported_operation_is_an_error(self, objects: list[SavedObject]) -> None:
        """A column this translation cannot express fails the check instead of being skipped."""
        top = _lens(objects, "clickstream-top-urls")
        attributes = copy.deepcopy(dict(top.attributes))
        layer = next(iter(attributes["state"]["datasourceStates"]["formBased"]["layers"].values()))
        layer["columns"]["clicks"]["operationType"] = "unique_count"
        with pytest.raises(SavedObjectError, match="unsupported operation 'unique_count'"):
            lens_layers(SavedObject(top.type, top.id, attributes, top.references))


class TestFormula:
    def test_precedence_and_parentheses(self) -> None:
        """`*` and `/` bind tighter than `+` and `-`; parentheses group."""
        assert parse_formula("sum(a) + sum(b) / 2") == BinaryOp(
            "add", _sum("a"), BinaryOp("divide", _sum("b"), Number(2.0))
        )
        assert parse_formula("(sum(a) + sum(b)) / 2") == BinaryOp(
            "divide", BinaryOp("add", _sum("a"), _sum("b")), Number(2.0)
        )

    @pytest.mark.parametrize(
        "formula",
        ["sum(a, kql='x')", "counter_rate(max(a))", "sum(a) +", "unique_count(a)", "sum(a) % 2"],
    )
    def test_outside_the_subset_is_refused(self, formula: str) -> None:
        """Filters, nested functions and unknown operations are not guessed at."""
        with pytest.raises(SavedObjectError):
            parse_formula(formula)

    def test_division_by_zero_is_empty_not_zero(self) -> None:
        """A URL with no known time spent has no average (None), not an average of 0."""
        expr = parse_formula("sum(time_spent_sum_ms) / sum(time_spent_count)")
        values: dict[FieldAgg, float | None] = {
            _sum("time_spent_sum_ms"): 0.0,
            _sum("time_spent_count"): 0.0,
        }
        assert evaluate(expr, values) is None
        values[_sum("time_spent_count")] = 4.0
        values[_sum("time_spent_sum_ms")] = 10.0
        assert evaluate(expr, values) == 2.5


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "CLICKSTREAM_"))}
    return subprocess.run(
        [str(IMPORT), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestImportScriptOffline:
    def test_dry_run_rewrites_only_the_alias(self, objects: list[SavedObject]) -> None:
        """--dry-run --prefix P prints the objects with the data view on P-views, nothing else
        changed, and contacts nobody."""
        result = _run("--prefix", "it_kibana_1", "--dry-run", KIBANA_URL="http://127.0.0.1:9")
        assert result.returncode == 0, result.stderr
        rewritten = parse_ndjson(result.stdout)
        assert by_type(rewritten, "index-pattern")[0].title == "it_kibana_1-views"
        original = [json.loads(line) for line in NDJSON.read_text().splitlines()]
        printed = [json.loads(line) for line in result.stdout.splitlines()]
        printed[0]["attributes"]["title"] = "clickstream-views"
        assert printed == original

    def test_prefix_defaults_to_the_pipeline_setting(self) -> None:
        """Without --prefix, CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX names the alias."""
        result = _run("--dry-run", CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX="prod")
        assert by_type(parse_ndjson(result.stdout), "index-pattern")[0].title == "prod-views"

    @pytest.mark.parametrize("prefix", ["Upper", "a/b", "x&y", "", "-lead"])
    def test_invalid_prefix_is_refused(self, prefix: str) -> None:
        """A prefix that is no index prefix stops the script with exit 2 before anything."""
        result = _run("--prefix", prefix, "--dry-run")
        assert result.returncode == 2
        assert "not a valid index prefix" in result.stderr
        assert result.stdout == ""

    def test_help(self) -> None:
        """--help documents the URL default, the credentials and --dry-run."""
        result = _run("--help")
        assert result.returncode == 0
        for word in ("http://127.0.0.1:5601", "KIBANA_API_KEY", "KIBANA_PASSWORD", "--dry-run"):
            assert word in result.stdout

    def test_unreachable_kibana_is_a_clear_error(self) -> None:
        """Nothing listening on KIBANA_URL: exit 1 and a message naming the URL."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        result = _run(KIBANA_URL=f"http://127.0.0.1:{port}")
        assert result.returncode == 1
        assert f"cannot reach Kibana at http://127.0.0.1:{port}" in result.stderr


def _multipart(content_type: str, body: bytes) -> list[Message]:
    """The parts of a multipart/form-data body."""
    message = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [part for part in message.walk() if not part.is_multipart()]


@dataclass
class StandIn:
    """A local HTTP endpoint that records requests and answers with ``status`` and ``reply``."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reply: dict[str, Any] = field(
        default_factory=lambda: {"successCount": 7, "success": True, "warnings": []}
    )


@pytest.fixture
def kibana() -> Iterator[StandIn]:
    """The stand-in, on a free loopback port, for one test."""
    stand_in = StandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            stand_in.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
            )
            payload = json.dumps(stand_in.reply, separators=(",", ":")).encode()
            self.send_response(stand_in.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()


class TestImportScriptRequest:
    def test_posts_the_rewritten_file_with_xsrf_and_basic_auth(self, kibana: StandIn) -> None:
        """One multipart POST to /s/SPACE/api/saved_objects/_import?overwrite=true with a
        kbn-xsrf header, basic credentials, the .ndjson file rewritten for the prefix; the
        password appears nowhere in the script's output."""
        result = _run(
            "--prefix",
            "staging",
            "--space",
            "analytics",
            KIBANA_URL=kibana.url + "/",
            KIBANA_USERNAME="importer",
            KIBANA_PASSWORD='s3cr"et\\pw',  # noqa: S106 - a throwaway test credential
        )
        assert result.returncode == 0, result.stderr
        assert "imported 7 saved objects" in result.stdout
        assert "s3cr" not in result.stdout + result.stderr
        (request,) = kibana.requests
        assert request["path"] == "/s/analytics/api/saved_objects/_import?overwrite=true"
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["kbn-xsrf"] == "true"
        assert headers["content-type"].startswith("multipart/form-data; boundary=")
        token = base64.b64encode(b'importer:s3cr"et\\pw').decode()
        assert headers["authorization"] == f"Basic {token}"
        (part,) = _multipart(headers["content-type"], request["body"])
        assert part.get_param("name", header="content-disposition") == "file"
        assert part.get_filename() == "clickstream.ndjson"
        dry_run = _run("--prefix", "staging", "--dry-run").stdout
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        assert payload.decode() == dry_run
        assert '"title":"staging-views"' in dry_run

    def test_api_key_header(self, kibana: StandIn) -> None:
        """KIBANA_API_KEY is sent as `Authorization: ApiKey ...` and not printed."""
        result = _run(KIBANA_URL=kibana.url, KIBANA_API_KEY="a2V5OnNlY3JldA==")
        assert result.returncode == 0, result.stderr
        (request,) = kibana.requests
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        assert request["path"] == "/api/saved_objects/_import?overwrite=true"
        assert "a2V5" not in result.stdout + result.stderr

    def test_import_errors_are_listed(self, kibana: StandIn) -> None:
        """success:false: exit 1 and each failed object with its error."""
        kibana.reply = {
            "success": False,
            "successCount": 6,
            "errors": [
                {
                    "id": "clickstream-bot-share",
                    "type": "lens",
                    "title": "Bot share",
                    "error": {"type": "missing_references", "references": []},
                }
            ],
        }
        result = _run(KIBANA_URL=kibana.url)
        assert result.returncode == 1
        assert "the import reported errors" in result.stderr
        assert "lens clickstream-bot-share" in result.stderr
        assert "missing_references" in result.stderr

    def test_http_error_is_reported(self, kibana: StandIn) -> None:
        """A refused request (401) fails with the status and Kibana's answer."""
        kibana.status = 401
        kibana.reply = {"statusCode": 401, "error": "Unauthorized", "message": "no credentials"}
        result = _run(KIBANA_URL=kibana.url)
        assert result.returncode == 1
        assert "HTTP 401" in result.stderr
        assert "no credentials" in result.stderr
