"""The dashboard in a real browser (Playwright driving Debian's chromium) on the real stack.

Generated traffic whose truth is known is ingested by a real daemon, the batch job passes its
first three hours (the boundary lands inside the data), and ``clickstream serve``'s app serves
the page over HTTP. The page must show what the API answers and what the truth says: the top
stats, the top rows, the boundary where it is; a click on a country filters the page and its
URL; another period changes the figures; realtime mode picks up new traffic without a reload;
no console errors. Screenshots at laptop and phone width go to tests/artifacts/.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, sync_playwright
from pyspark.sql import SparkSession

from clickstream.settings import IngestSettings, Settings
from clickstream.times import HOUR_MS, MINUTE_MS
from processing.job import run_batch
from serving.access import key_hash, new_key
from serving.api import create_app
from tests.integration.helpers import (
    Spawn,
    bots_by_rule,
    make_traffic,
    traffic_start_ms,
    wait_for,
)
from tests.paths import GEO_DB
from traffic.generate import Traffic, TrafficSpec, generate, publish
from traffic.harness import committed, free_port
from traffic.population import GeoSample
from traffic.truth import GroundTruth

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CLICKSTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LAPTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


class Server:
    """``clickstream serve``'s app under uvicorn, in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(settings), port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        wait_for(lambda: self._server.started, 30)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium (``make browser`` installs it), headless."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no browser at {CHROMIUM}: run `make browser` (or set CLICKSTREAM_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


def value(page: Page, selector: str) -> str | None:
    """The exact value an element of the page keeps in ``data-value``."""
    return page.get_attribute(selector, "data-value")


def wait_value(page: Page, selector: str, expected: object, timeout_s: float = 30) -> None:
    """Wait until ``selector``'s data-value is ``expected`` (the page loads asynchronously)."""
    page.wait_for_function(
        "([selector, expected]) => document.querySelector(selector)?.dataset.value === expected",
        arg=[selector, str(expected)],
        timeout=timeout_s * 1000,
    )


def ready(page: Page) -> None:
    page.wait_for_selector("body[data-state=ready]", timeout=30_000)


def api(base: str, path: str, key: str | None = None, **params: Any) -> dict[str, Any]:
    given = {name: v for name, v in params.items() if v is not None}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{base}{path}", params=given, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def page_range(page: Page) -> dict[str, str]:
    """The range the page asked for (``data-range`` = from/to, as sent to the API)."""
    since, until = str(page.get_attribute("body", "data-range")).split("/")
    return {"from": since, "to": until}


def check_stats(page: Page, base: str, truth: GroundTruth, country: str | None = None) -> None:
    """Top stats equal the API's answer for the page's range, and the truth."""
    answer = api(base, "/v1/metrics", **page_range(page), country=country)["total"]
    expected = truth.totals(country=country)
    assert value(page, "#stat-clicks .value") == str(answer["clicks"]) == str(expected.clicks)
    users = answer["unique_users"]
    assert value(page, "#stat-users .value") == str(users["value"])
    assert page.get_attribute("#stat-users .value", "data-exact") == str(users["exact"]).lower()
    assert expected.unique_users is not None
    assert users["lower_bound"] <= expected.unique_users <= users["upper_bound"]
    average = round(expected.time_spent_sum_ms / expected.time_spent_count)
    assert value(page, "#stat-time .value") == str(average)
    assert sum(answer["bot_clicks_by_rule"].values()) == answer["bot_clicks"]
    for rule, count in answer["bot_clicks_by_rule"].items():
        shown = page.locator(f"#stat-bots [data-rule='{rule}']")
        if rule == "unknown" and not count:  # shown only when some bots have no stored rule
            assert shown.count() == 0
        else:
            assert shown.get_attribute("data-value") == str(count)
    share = float(value(page, "#stat-bots .value") or "nan")
    assert share == pytest.approx(expected.bot_clicks / (expected.clicks + expected.bot_clicks))


def check_rows(page: Page, base: str, table: str, group_by: str, truth: GroundTruth) -> list[str]:
    """The breakdown rows equal the API's top 10 and the truth; returns their keys."""
    answer = api(base, "/v1/metrics", **page_range(page), group_by=group_by, top=10)
    rows = page.locator(f"{table} tbody tr")
    keys = [str(rows.nth(i).get_attribute("data-key")) for i in range(rows.count())]
    assert keys == [group[group_by] for group in answer["groups"]]
    for i, key in enumerate(keys):
        clicks = rows.nth(i).locator(".clicks").get_attribute("data-value")
        expected = truth.totals(url=key) if group_by == "url" else truth.totals(country=key)
        assert clicks == str(expected.clicks), key
    return keys


def test_the_dashboard_shows_the_merged_answer_the_boundary_and_realtime(
    pipeline: Settings, spawn: Spawn, spark: SparkSession, browser: Browser
) -> None:
    traffic = make_traffic(events=3000, seed=51)
    start = traffic_start_ms()
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("a", "--exit-when-idle", "3").finish()
    boundary = start + 3 * HOUR_MS
    run_batch(spark, pipeline, start, boundary, progress=lambda _: None)
    truth = traffic.truth
    ARTIFACTS.mkdir(exist_ok=True)

    errors: list[str] = []
    with Server(pipeline) as server:
        page = browser.new_page(viewport=LAPTOP)
        page.on("console", lambda m: _console_error(m, errors))
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # Last 24 hours: every figure equals the API and the truth.
        page.goto(f"{server.url}/?period=24h")
        ready(page)
        check_stats(page, server.url, truth)
        answer = api(server.url, "/v1/metrics", **page_range(page))
        by_rule = bots_by_rule(traffic.messages)
        assert answer["total"]["bot_clicks_by_rule"] == {**by_rule, "unknown": 0}
        check_rows(page, server.url, "#pages", "url", truth)
        countries = check_rows(page, server.url, "#countries", "country", truth)
        assert page.locator("#bucket").inner_text() == "hour"
        check_boundary(page, server.url, truth, start, boundary)
        page.screenshot(path=ARTIFACTS / "dashboard-laptop.png", full_page=True)
        page.set_viewport_size(PHONE)
        page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
        page.set_viewport_size(LAPTOP)

        check_country_filter(page, server.url, truth, countries[0])
        check_realtime(page, pipeline, spawn, len(traffic.messages))
    assert errors == []
    check_with_a_key(browser, pipeline)


def check_with_a_key(browser: Browser, pipeline: Settings) -> None:
    """With API keys on, the page asks for one, keeps it for the session, and then shows the
    figures (all the traffic so far, the live part too: as the API answers); its own files
    need none."""
    key = new_key()
    serving = pipeline.serving.model_copy(update={"api_keys": {"dashboard": key_hash(key)}})
    with Server(pipeline.model_copy(update={"serving": serving})) as server:
        page = browser.new_page(viewport=LAPTOP)
        page.goto(f"{server.url}/?period=24h")
        page.wait_for_selector("#key-form", state="visible", timeout=30_000)
        assert "give an API key" in page.locator("#status").inner_text()
        page.fill("#key-form input[name=key]", "cs_wrong")
        page.click("#key-form button")
        page.wait_for_selector("body[data-state=error]")
        assert page.is_visible("#key-form")
        page.fill("#key-form input[name=key]", key)
        page.click("#key-form button")
        ready(page)
        answer = api(server.url, "/v1/metrics", key, **page_range(page))
        assert value(page, "#stat-clicks .value") == str(answer["total"]["clicks"])
        assert answer["total"]["clicks"] > 0
        assert page.is_hidden("#key-form")
        page.reload()  # kept for the browser session
        wait_value(page, "#stat-clicks .value", answer["total"]["clicks"])
        page.close()


def check_boundary(page: Page, base: str, truth: GroundTruth, start: int, boundary: int) -> None:
    """The boundary marker sits where the boundary is on the graph's time axis; the graph's
    batch part is the hours before it."""
    series = api(base, "/v1/series", **page_range(page))
    assert series["boundary_ms"] == boundary
    assert page.get_attribute("#boundary-marker", "data-ms") == str(boundary)
    assert page.is_visible("#boundary-marker")
    first = series["points"][0]["start_ms"]
    end = first + len(series["points"]) * series["bucket_ms"]
    over = page.locator("#chart .u-over").bounding_box()
    marker = page.locator("#boundary-marker").bounding_box()
    assert over is not None
    assert marker is not None
    expected_x = over["x"] + over["width"] * (boundary - first) / (end - first)
    assert marker["x"] == pytest.approx(expected_x, abs=2)
    batch = sum(p["batch_clicks"] for p in series["points"])
    speed = sum(p["speed_clicks"] for p in series["points"])
    assert batch == truth.totals(hours=(start, boundary)).clicks
    assert batch + speed == truth.totals().clicks


def check_country_filter(page: Page, base: str, truth: GroundTruth, country: str) -> None:
    """A click on a country filters the whole page and its URL; removing the chip undoes it."""
    page.locator("#countries tbody tr").first.get_by_role("button").click()
    page.wait_for_url(f"**country={country}**")
    wait_value(page, "#stat-clicks .value", truth.totals(country=country).clicks)
    ready(page)
    check_stats(page, base, truth, country=country)
    assert page.locator("#filters .chip[data-filter=country]").is_visible()
    rows = page.locator("#countries tbody tr").all()
    assert [row.get_attribute("data-key") for row in rows] == [country]
    page.locator("#filters .chip[data-filter=country] button").click()
    wait_value(page, "#stat-clicks .value", truth.totals().clicks)
    assert "country=" not in page.url


def check_realtime(page: Page, pipeline: Settings, spawn: Spawn, sent: int) -> None:
    """Another period changes the figures (the last 30 minutes hold none of the traffic so
    far); then new traffic shows up in realtime mode without a reload."""
    page.get_by_role("button", name="Realtime").click()
    page.wait_for_url("**period=30m**")
    wait_value(page, "#stat-clicks .value", 0)
    assert page.locator("#bucket").inner_text() == "minute"
    assert "refreshing every" in page.locator("#status").inner_text()
    page.evaluate("window.notReloaded = true")
    live = _live_traffic(seed=52)
    spawn("b")
    publish(live, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    wait_for(lambda: committed(pipeline) >= sent + len(live.messages), 120)
    wait_value(page, "#stat-clicks .value", live.truth.totals().clicks, timeout_s=60)
    assert page.evaluate("window.notReloaded") is True


def _console_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def _live_traffic(seed: int) -> Traffic:
    """Ten minutes of traffic up to a minute ago: inside the realtime period."""
    now = int(time.time() * 1000)
    spec = TrafficSpec(
        start_ms=now - 11 * MINUTE_MS,
        session_timeout_ms=IngestSettings().session_timeout_ms,
        events=300,
        hours=10 / 60,
        late_share=0.0,
    )
    return generate(spec, seed=seed, geo=GeoSample.from_mmdb([GEO_DB], seed=seed))
