"""Batch views as Spark transformations: sessionise per user, then aggregate per (url, country,
hour) and into the cube's rollups (every level, hour and day grain).

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
from indexing.views import BOT_RULE_FIELDS, LEVEL_KEYS

#: What the reader yields per stored click: only the columns the views need.
CLICKS_SCHEMA = StructType(
    [
        StructField("user_id", StringType(), nullable=False),
        StructField("ts", LongType(), nullable=False),
        StructField("event_id", StringType(), nullable=False),
        StructField("url", StringType(), nullable=False),
        StructField("country", StringType(), nullable=False),
        StructField("is_bot", BooleanType(), nullable=False),
        StructField("bot_rule", StringType(), nullable=True),
    ]
)

GROUP = ["url", "country", "hour"]


def _bots_by_rule() -> list[Column]:
    """Bot clicks per rule, one column per field of BOT_RULE_FIELDS."""
    return [
        F.count(F.when(F.col("is_bot") & (F.col("bot_rule") == F.lit(rule)), 1))
        .cast("long")
        .alias(field)
        for rule, field in BOT_RULE_FIELDS.items()
    ]


def _hour(ts: Column) -> Column:
    return F.floor(ts / HOUR_MS) * HOUR_MS


def sessionised(clicks: DataFrame, t0_ms: int, t1_ms: int, session_timeout_ms: int) -> DataFrame:
    """The clicks of ``[t0, t1)``, each with its ``time_spent`` (ms): the gap to the same user's
    next human click when at most the session timeout; null for the last click of a session
    and for bots. ``clicks`` must reach one session timeout past ``t1``."""
    by_user = Window.partitionBy("user_id").orderBy("ts", "event_id")
    gap = F.lead("ts").over(by_user) - F.col("ts")
    humans = clicks.filter(~F.col("is_bot")).withColumn(
        "time_spent", F.when(gap <= F.lit(session_timeout_ms), gap)
    )
    bots = clicks.filter(F.col("is_bot")).withColumn("time_spent", F.lit(None).cast(LongType()))
    in_range = (F.col("ts") >= F.lit(t0_ms)) & (F.col("ts") < F.lit(t1_ms))
    return humans.unionByName(bots).filter(in_range)


def rollups(clicks: DataFrame, grain_ms: int, levels: tuple[str, ...], lg_k: int) -> DataFrame:
    """The cube's rollups of :func:`sessionised` clicks: one row per (level, bucket of
    ``grain_ms``, the level's keys) with clicks, bot clicks, exact unique users, the users' HLL
    sketch, and the time-spent sum and count. One pass: Spark's grouping sets compute every
    level from the same input. Columns: level, start, url, country (null where the level
    counts all), and the measures."""
    human_user = F.when(~F.col("is_bot"), F.col("user_id"))
    bucketed = clicks.withColumn("start", F.floor(F.col("ts") / grain_ms) * grain_ms)
    sets = [[F.col("start"), *(F.col(key) for key in LEVEL_KEYS[level])] for level in levels]
    grouped = bucketed.groupingSets(sets, "start", "url", "country").agg(
        F.count(F.when(~F.col("is_bot"), 1)).cast("long").alias("clicks"),
        F.count(F.when(F.col("is_bot"), 1)).cast("long").alias("bot_clicks"),
        *_bots_by_rule(),
        F.countDistinct(human_user).cast("long").alias("unique_users"),
        F.hll_sketch_agg(human_user, lg_k).alias("users_sketch"),
        F.coalesce(F.sum("time_spent"), F.lit(0)).cast("long").alias("time_spent_sum_ms"),
        F.count("time_spent").cast("long").alias("time_spent_count"),
        F.grouping_id("start", "url", "country").alias("_rolled"),
    )
    # grouping_id bits (start, url, country): url rolled up = 2, country = 1; start never is.
    level = F.lit(None).cast(StringType())
    for name, keys in LEVEL_KEYS.items():
        rolled = ("url" not in keys) * 2 + ("country" not in keys) * 1
        level = F.when(F.col("_rolled") == rolled, F.lit(name)).otherwise(level)
    return grouped.withColumn("level", level).drop("_rolled")


def batch_views(clicks: DataFrame, lg_k: int) -> DataFrame:
    """One row per (url, country, hour) of :func:`sessionised` clicks: clicks, exact unique
    users, the users' HLL sketch, time-spent sum and count, bot clicks."""
    in_range = clicks.withColumn("hour", _hour(F.col("ts")))
    humans = (
        in_range.filter(~F.col("is_bot"))
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
        in_range.filter(F.col("is_bot"))
        .groupBy(*GROUP)
        .agg(F.count(F.lit(1)).alias("bot_clicks"), *_bots_by_rule())
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
        *(F.coalesce(f, F.lit(0)).cast("long").alias(f) for f in BOT_RULE_FIELDS.values()),
    )
