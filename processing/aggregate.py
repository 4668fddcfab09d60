"""Batch views as Spark transformations: sessionise per user, aggregate per (url, country, hour).

Definitions (README, "Metric definitions"): a click is a non-bot event; its time spent is the gap
to the same user's next non-bot click (ordered by event time, then event id) when that gap is at
most the session timeout, else unknown; bot events are counted apart. The input must reach one
session timeout past the range end, so the time spent of clicks near the end is known.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention
from pyspark.sql.types import (
    BooleanType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from clickstream.times import HOUR_MS
from indexing.views import LEVEL_ALL, LEVEL_COUNTRY, LEVEL_URL

#: What the reader yields per stored click: only the columns the views need.
CLICKS_SCHEMA = StructType(
    [
        StructField("user_id", StringType(), nullable=False),
        StructField("ts", LongType(), nullable=False),
        StructField("event_id", StringType(), nullable=False),
        StructField("url", StringType(), nullable=False),
        StructField("country", StringType(), nullable=False),
        StructField("is_bot", BooleanType(), nullable=False),
    ]
)

GROUP = ["url", "country", "hour"]


def _hour(ts: Column) -> Column:
    return F.floor(ts / HOUR_MS) * HOUR_MS


def batch_views(
    clicks: DataFrame, t0_ms: int, t1_ms: int, session_timeout_ms: int, lg_k: int
) -> DataFrame:
    """One row per (url, country, hour) with an event in ``[t0, t1)``: clicks, exact unique
    users, the users' HLL sketch, time-spent sum and count, average, bot clicks."""
    in_range = (F.col("ts") >= F.lit(t0_ms)) & (F.col("ts") < F.lit(t1_ms))
    by_user = Window.partitionBy("user_id").orderBy("ts", "event_id")
    humans = (
        clicks.filter(~F.col("is_bot"))
        .withColumn("next_ts", F.lead("ts").over(by_user))
        .withColumn("gap", F.col("next_ts") - F.col("ts"))
        .withColumn(
            "time_spent",
            F.when(F.col("gap") <= F.lit(session_timeout_ms), F.col("gap")),
        )
        .filter(in_range)
        .withColumn("hour", _hour(F.col("ts")))
        .groupBy(*GROUP)
        .agg(
            F.count(F.lit(1)).alias("clicks"),
            F.countDistinct("user_id").alias("unique_users"),
            F.hll_sketch_agg("user_id", lg_k).alias("users_sketch"),
            F.coalesce(F.sum("time_spent"), F.lit(0)).cast("long").alias("time_spent_sum_ms"),
            F.count("time_spent").alias("time_spent_count"),
        )
    )
    bots = (
        clicks.filter(F.col("is_bot") & in_range)
        .withColumn("hour", _hour(F.col("ts")))
        .groupBy(*GROUP)
        .agg(F.count(F.lit(1)).alias("bot_clicks"))
    )
    views = humans.join(bots, on=GROUP, how="full_outer")
    return views.select(
        *GROUP,
        F.coalesce("clicks", F.lit(0)).cast("long").alias("clicks"),
        F.coalesce("unique_users", F.lit(0)).cast("long").alias("unique_users"),
        "users_sketch",
        F.coalesce("time_spent_sum_ms", F.lit(0)).cast("long").alias("time_spent_sum_ms"),
        F.coalesce("time_spent_count", F.lit(0)).cast("long").alias("time_spent_count"),
        F.coalesce("bot_clicks", F.lit(0)).cast("long").alias("bot_clicks"),
    ).withColumn(
        "avg_time_spent_ms",
        F.when(
            F.col("time_spent_count") > 0, F.col("time_spent_sum_ms") / F.col("time_spent_count")
        ),
    )


def batch_uniques(clicks: DataFrame, t0_ms: int, t1_ms: int) -> DataFrame:
    """Exact distinct non-bot users per hour of ``[t0, t1)`` at the coarse levels: (url, all
    countries), (all urls, country), (all urls, all countries). Columns: level, url (null at
    the country and all levels), country (null at the url and all levels), hour, unique_users.

    Distinct counts do not add up across groups, so each level is counted from the clicks; the
    (url, country, hour) level is already exact in the views.
    """
    humans = clicks.filter(
        ~F.col("is_bot") & (F.col("ts") >= F.lit(t0_ms)) & (F.col("ts") < F.lit(t1_ms))
    ).select("user_id", "url", "country", _hour(F.col("ts")).alias("hour"))
    null = F.lit(None).cast(StringType())

    def level(name: str, url: Column, country: Column, *keys: str) -> DataFrame:
        counted = humans.groupBy(*keys, "hour").agg(
            F.countDistinct("user_id").cast("long").alias("unique_users")
        )
        return counted.select(
            F.lit(name).alias("level"),
            url.alias("url"),
            country.alias("country"),
            "hour",
            "unique_users",
        )

    return (
        level(LEVEL_URL, F.col("url"), null, "url")
        .unionByName(level(LEVEL_COUNTRY, null, F.col("country"), "country"))
        .unionByName(level(LEVEL_ALL, null, null))
    )
