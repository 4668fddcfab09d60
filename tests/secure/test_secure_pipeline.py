"""The whole pipeline on the secure stack, each step as its own least-privilege principal.

generate -> Kafka (SASL_SSL, the producer) -> `clickstream ingest` (the ingest principal, a
real daemon process) -> HBase and the speed layer -> the Spark batch job (the batch principal)
-> the merged answer and the HTTP API (the serving principal, with an API key): the totals
equal the truth, and no log line of the run carries a password.

HBase is the plain local stack's (its Thrift server has nothing to secure it with: README,
"Security"); the run's table is its own. The secure stack's topics, groups and index prefix are
fixed by its ACLs and roles, so this run tells its data apart by a site of its own: every query
filters on that url prefix. The batch starts at the watermark a previous session left, if
any, so it never leaves a gap (the job refuses one).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clickstream.settings import IngestSettings, Settings, load_settings
from clickstream.times import HOUR_MS
from commands.defaults import admin_runtime
from commands.stack.manager import Stack
from commands.stack.secure import SecureFiles
from indexing.client import connect as es_connect
from indexing.state import read_watermark
from indexing.templates import create_templates
from ingest.topics import create_topics
from processing.job import run_batch, spark_session
from serving.access import key_hash, new_key
from serving.api import create_app
from serving.params import MetricsQuery
from serving.service import MetricsService
from storage.admin import create_table, drop_tables
from tests.paths import GEO_DB
from tests.stacks import running
from traffic.generate import TrafficSpec, generate, publish
from traffic.harness import DaemonProcess
from traffic.population import GeoSample
from traffic.truth import GroundTruth

pytestmark = pytest.mark.secure


@pytest.fixture(scope="module")
def plain_hbase() -> Iterator[Settings]:
    """The plain local stack (for its HBase and Thrift), started if needed."""
    with running(load_settings(), "stack") as stack:
        yield stack.settings


def principal(files: SecureFiles, name: str, table: str) -> Settings:
    """A principal's client settings (as `stack up` wrote them), on the run's HBase table."""
    settings = load_settings(files.client_config(name))
    hbase = settings.hbase.model_copy(update={"table": table})
    ingest = settings.ingest.model_copy(update={"geoip_database": GEO_DB})
    return settings.model_copy(update={"hbase": hbase, "ingest": ingest})


def test_the_pipeline_runs_on_the_secure_stack_and_equals_the_truth(
    secure_stack: Stack,
    files: SecureFiles,
    plain_hbase: Settings,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = secrets.token_hex(4)
    table = f"secure_e2e_{run}"
    site = f"https://e2e-{run}.example"
    admin = principal(files, "admin", table)
    start = (int(time.time() * 1000) // HOUR_MS - 8) * HOUR_MS
    spec = TrafficSpec(
        start_ms=start,
        session_timeout_ms=IngestSettings().session_timeout_ms,
        events=1500,
        hours=6,
        sites=(site,),
    )
    traffic = generate(spec, seed=int(run, 16), geo=GeoSample.from_mmdb([GEO_DB], seed=7))
    truth = traffic.truth

    create_topics(admin.kafka)
    create_table(admin, admin_runtime(admin, progress=lambda _: None))
    client = es_connect(admin.elasticsearch)
    try:
        create_templates(client, admin.elasticsearch)
    finally:
        client.close()
    try:
        producer = principal(files, "producer", table)
        publish(traffic, producer.kafka, producer.kafka.clicks_topic, progress=lambda _: None)

        ingest = principal(files, "ingest", table)
        daemon = DaemonProcess.start(
            ingest,
            "e2e",
            "--exit-when-idle",
            "5",
            CLICKSTREAM_CONFIG=str(files.client_config("ingest")),
            CLICKSTREAM_INGEST__GROUP_ID=ingest.ingest.group_id,  # the group its ACLs name
            CLICKSTREAM_SPEED__ALLOWED_LATENESS_S=str(4 * HOUR_MS // 1000),
        )
        log = daemon.finish(timeout=600)

        batch = principal(files, "batch", table)
        boundary = start + 3 * HOUR_MS
        batch_from = _batch_start(batch, start)
        spark = spark_session(batch, app="clickstream-secure-e2e")
        try:
            run_batch(spark, batch, batch_from, boundary, progress=lambda _: None)
        finally:
            spark.stop()

        serving = principal(files, "serving", table)
        _check_answers(serving, truth, site, start, boundary)
        assert '"event": "ingest.batch"' in log
        captured = capfd.readouterr()  # this process's own output: the batch job, the API
        _check_no_secret_in(log + captured.out + captured.err, files)
    finally:
        drop_tables(admin)


def _batch_start(batch: Settings, start: int) -> int:
    """The batch's start: the run's, or a previous session's watermark if that is earlier
    (a later start would leave a gap, which the job refuses)."""
    client = es_connect(batch.elasticsearch)
    try:
        watermark = read_watermark(client, batch.elasticsearch.index_prefix).completed_until_ms
    finally:
        client.close()
    return start if watermark is None or watermark >= start else watermark


def _check_answers(
    serving: Settings, truth: GroundTruth, site: str, start: int, boundary: int
) -> None:
    """The merged answer (service and HTTP API, with a key) equals the truth of the run."""
    everything = MetricsQuery(from_ms=start, to_ms=start + 8 * HOUR_MS, url_prefix=site)
    expected = truth.totals()
    service = MetricsService(serving)
    try:
        answer = service.query(everything)
    finally:
        service.close()
    assert answer.boundary_ms is not None
    assert answer.boundary_ms >= boundary
    assert answer.total.clicks == expected.clicks
    assert answer.total.bot_clicks == expected.bot_clicks
    assert answer.total.time_spent_sum_ms == expected.time_spent_sum_ms
    assert answer.total.time_spent_count == expected.time_spent_count
    users = answer.total.unique_users
    assert expected.unique_users is not None
    assert users.lower_bound <= expected.unique_users <= users.upper_bound

    key = new_key()
    keyed = serving.serving.model_copy(update={"api_keys": {"e2e": key_hash(key)}})
    app = create_app(serving.model_copy(update={"serving": keyed}))
    params = {"from": _iso(start), "to": _iso(start + 8 * HOUR_MS), "url": site}
    with TestClient(app) as api:
        refused = api.get("/v1/metrics", params=params)
        body = api.get("/v1/metrics", params=params, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert body.status_code == 200, body.text
    assert body.json()["total"]["clicks"] == expected.clicks


def _check_no_secret_in(log: str, files: SecureFiles) -> None:
    """No password of any principal appears in the run's logs (the daemon's, and this
    process's: the Spark batch job's and the API's)."""
    for path in files.password("any").parent.iterdir():
        secret = path.read_text().strip()
        assert secret
        assert secret not in log, f"{path.name}'s password is in the daemon's log"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
