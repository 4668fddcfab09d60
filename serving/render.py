"""``clickstream query`` output: a table for people, JSON or CSV for scripts (pure)."""

from __future__ import annotations

import csv
import io
import json

from serving.answer import Answer, answer_dict
from serving.merge import Metrics, UniqueUsers

CSV_COLUMNS = (
    "scope",
    "url",
    "country",
    "clicks",
    "bot_clicks",
    "unique_users",
    "unique_users_exact",
    "unique_users_lower",
    "unique_users_upper",
    "time_spent_sum_ms",
    "time_spent_count",
    "clicks_without_time_spent",
    "avg_time_spent_ms",
)


def render(answer: Answer, fmt: str) -> str:
    """The answer in ``fmt``: table, json or csv."""
    if fmt == "json":
        return json.dumps(answer_dict(answer), indent=2)
    if fmt == "csv":
        return render_csv(answer)
    return render_table(answer)


def _users(users: UniqueUsers) -> str:
    if users.exact:
        return f"{users.value} (exact)"
    return f"~{users.value} [{users.lower_bound}, {users.upper_bound}]"


def _avg(metrics: Metrics) -> str:
    return "-" if metrics.avg_time_spent_ms is None else f"{metrics.avg_time_spent_ms / 1000:.1f}s"


def render_table(answer: Answer) -> str:
    """A header (range, boundary, freshness, late events) and one line per group, then the total."""
    data = answer_dict(answer)
    late = data["late_events_waiting"]
    in_range = data["late_events_in_range"]
    lines = [
        f"range       [{data['range']['from']}, {data['range']['to']})",
        f"boundary    {data['boundary'] or 'none yet (no batch run): all from the speed layer'}",
        f"speed until {data['speed_until'] or 'no speed views'}",
        "late events unknown (see the note)"
        if late is None
        else f"late events {late} waiting for the next batch run"
        + ("" if not in_range else f", {in_range} of them in this range"),
    ]
    header = f"{'url':<48} {'country':<7} {'clicks':>9} {'unique users':<26} {'avg time':>9} "
    header += f"{'no time':>8} {'bots':>7}"
    lines += ["", header]
    rows = [(g.url or "*", g.country or "*", g.metrics) for g in answer.groups]
    rows.append(("TOTAL", "", answer.total))
    for url, country, m in rows:
        lines.append(
            f"{url[:48]:<48} {country:<7} {m.clicks:>9} {_users(m.unique_users):<26} "
            f"{_avg(m):>9} {m.clicks_without_time_spent:>8} {m.bot_clicks:>7}"
        )
    if answer.group_count > len(answer.groups):
        lines.append(f"({len(answer.groups)} of {answer.group_count} groups shown: --top)")
    lines += [f"note: {note}" for note in answer.notes]
    return "\n".join(lines)


def render_csv(answer: Answer) -> str:
    """One row per group and a last ``total`` row; empty cells for unknown values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [("group", g.url, g.country, g.metrics) for g in answer.groups]
    rows.append(("total", None, None, answer.total))
    for scope, url, country, m in rows:
        users = m.unique_users
        writer.writerow(
            [
                scope,
                url or "",
                country or "",
                m.clicks,
                m.bot_clicks,
                users.value,
                str(users.exact).lower(),
                users.lower_bound,
                users.upper_bound,
                m.time_spent_sum_ms,
                m.time_spent_count,
                m.clicks_without_time_spent,
                "" if m.avg_time_spent_ms is None else f"{m.avg_time_spent_ms:.3f}",
            ]
        )
    return out.getvalue()
