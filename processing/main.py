"""spark-submit entry point of the batch job (deploy/spark/submit.sh builds the command).

    spark-submit --py-files clickstream.zip processing/main.py [--from ISO --to ISO] [--config F]

The master, memory and other Spark settings come from spark-submit; the pipeline's settings from
--config / CLICKSTREAM_CONFIG and CLICKSTREAM_* variables, as everywhere else.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

from clickstream.errors import ClickstreamError
from clickstream.logs import configure_logging
from clickstream.settings import load_settings
from processing.job import batch_range, run_batch


def main(argv: list[str] | None = None) -> int:
    """Run the batch job once; the exit code."""
    parser = argparse.ArgumentParser(
        prog="processing/main.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="since", metavar="ISO", help="range start (whole hour)")
    parser.add_argument("--to", metavar="ISO", help="range end, exclusive (whole hour)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    try:
        settings = load_settings(args.config)
        t0, t1 = batch_range(settings, args.since, args.to, int(time.time() * 1000))
        if t0 == t1:
            print("nothing to do: the watermark is at the last complete hour")
            return 0
        spark = SparkSession.builder.appName("clickstream-batch").getOrCreate()
        spark.sparkContext.setLogLevel("WARN")
        try:
            result = run_batch(spark, settings, t0, t1)
        finally:
            spark.stop()
    except ClickstreamError as exc:
        print(f"clickstream batch: error: {exc}", file=sys.stderr)
        return 1
    print(f"batch views of {result.views} groups in {result.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
