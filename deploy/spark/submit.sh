#!/usr/bin/env bash
# The batch job through spark-submit: ships the project's code as a zip (--py-files) and runs
# processing/main.py. Works unchanged with the default --master local[2]; on a cluster:
#
#   SPARK_MASTER=yarn SPARK_PYTHON_ARCHIVE=build/spark/pyenv.tar.gz deploy/spark/submit.sh --from ... --to ...
#   SPARK_MASTER=k8s://https://api.example:6443 SPARK_PYTHON_ARCHIVE=... SPARK_EXTRA="--conf spark.kubernetes.container.image=..." deploy/spark/submit.sh
#
# SPARK_PYTHON_ARCHIVE is a packed virtualenv with the project's dependencies, e.g.
#   python3 -m venv env && env/bin/pip install . venv-pack && env/bin/venv-pack -o pyenv.tar.gz
# It is shipped with --archives and unpacked as ./environment on every executor. Without it
# (local mode) executors use this checkout's .venv Python.
# Everything after the options goes to the job: --from ISO --to ISO, --config FILE.
#
# The zip goes to build/spark/ of this checkout, or, under systemd (clickstream-batch.service:
# DynamicUser, a read-only install), to the unit's CacheDirectory= ($CACHE_DIRECTORY, else
# $STATE_DIRECTORY): nothing is written under the install. `submit.sh --build-only` builds the
# zip, prints its path and exits without running spark-submit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
spark_submit=${SPARK_SUBMIT:-$root/.venv/bin/spark-submit}
master=${SPARK_MASTER:-local[2]}
# systemd passes each directory of a unit; a list is colon-separated: the first one will do.
systemd_dir=${CACHE_DIRECTORY:-${STATE_DIRECTORY:-}}
build=${systemd_dir%%:*}
build=${build:-$root/build/spark}
mkdir -p "$build"

# The project's packages, without caches, as one zip for --py-files.
"$python" - "$root" "$build/clickstream.zip" <<'PY'
import sys, zipfile
from pathlib import Path
root, target = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
    for package in ("clickstream", "hbase_schema", "storage", "indexing", "processing"):
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(root))
PY
if [[ "${1:-}" == --build-only ]]; then
  echo "$build/clickstream.zip"
  exit 0
fi

args=(--master "$master" --name clickstream-batch --py-files "$build/clickstream.zip"
      --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false
      --conf spark.sql.session.timeZone=UTC
      --conf "spark.sql.shuffle.partitions=${SPARK_SHUFFLE_PARTITIONS:-4}"
      --driver-memory "${SPARK_DRIVER_MEMORY:-2g}"
      --driver-java-options "-Dlog4j2.configurationFile=$root/processing/log4j2.properties")
if [[ -n "${SPARK_PYTHON_ARCHIVE:-}" ]]; then
  args+=(--archives "$SPARK_PYTHON_ARCHIVE#environment"
         --conf spark.pyspark.python=./environment/bin/python)
  export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$python}
else
  export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$python}
fi
# shellcheck disable=SC2086 # SPARK_EXTRA is a list of spark-submit options on purpose
exec "$spark_submit" "${args[@]}" ${SPARK_EXTRA:-} "$root/processing/main.py" "$@"
