#!/usr/bin/env bash
# Imports the clickstream data view, visualisations and dashboard into Kibana through the
# saved-objects API. Run with --help for the options; credentials come from the environment only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
file=$here/clickstream.ndjson
prefix=${CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX:-clickstream}
space=${KIBANA_SPACE:-}
dry_run=0

usage() {
  cat <<EOF
Usage: $(basename "$0") [--prefix PREFIX] [--space SPACE] [--file FILE] [--dry-run]

Imports the saved objects of FILE (default: clickstream.ndjson beside this script) into Kibana:
POST \$KIBANA_URL[/s/SPACE]/api/saved_objects/_import?overwrite=true. Objects with the same ids
are replaced, so running it again updates the dashboard.

  --prefix PREFIX  index prefix of the deployment: the data view reads the alias PREFIX-views
                   (default: \$CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX, else clickstream)
  --space SPACE    Kibana space to import into (default: \$KIBANA_SPACE, else the default space);
                   the object ids do not depend on the prefix, so give each deployment its space
  --file FILE      ndjson file to import
  --dry-run        print the ndjson that would be imported (prefix applied) and contact nothing
  -h, --help       this text

Environment:
  KIBANA_URL       base URL of Kibana (default: http://127.0.0.1:5601)
  KIBANA_API_KEY   an API key (sent as "Authorization: ApiKey ..."), or
  KIBANA_USERNAME and KIBANA_PASSWORD for basic authentication
  KIBANA_CA_CERT   CA bundle to verify Kibana's TLS certificate with
Credentials are handed to curl on its standard input, never on its command line, and never printed.

Exit status: 0 imported, 1 Kibana unreachable or the import failed, 2 bad usage.
EOF
}

die() { echo "import.sh: $1" >&2; exit "${2:-1}"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) [[ $# -ge 2 ]] || die "--prefix needs a value" 2; prefix=$2; shift 2 ;;
    --space) [[ $# -ge 2 ]] || die "--space needs a value" 2; space=$2; shift 2 ;;
    --file) [[ $# -ge 2 ]] || die "--file needs a value" 2; file=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" 2 ;;
  esac
done

# Elasticsearch index names are lower case; this subset also keeps the sed replacement literal.
[[ $prefix =~ ^[a-z0-9][a-z0-9_-]*$ ]] \
  || die "prefix '$prefix' is not a valid index prefix (lower-case letters, digits, _ and -)" 2
[[ -z $space || $space =~ ^[a-z0-9_-]+$ ]] \
  || die "space '$space' is not a Kibana space id (lower-case letters, digits, _ and -)" 2
[[ -r $file ]] || die "cannot read $file" 2

# The data view is the only place the alias is named; the rewrite must find it exactly once.
alias_token='"title":"clickstream-views"'
count=$(grep -o "$alias_token" "$file" | wc -l || true)
[[ $count -eq 1 ]] || die "$file names the alias $count times (expected once: $alias_token)"

rewritten=$(mktemp "${TMPDIR:-/tmp}/clickstream-kibana.XXXXXX")
response=$(mktemp "${TMPDIR:-/tmp}/clickstream-kibana-response.XXXXXX")
errors=$(mktemp "${TMPDIR:-/tmp}/clickstream-kibana-curl.XXXXXX")
trap 'rm -f "$rewritten" "$response" "$errors"' EXIT
sed "s/$alias_token/\"title\":\"$prefix-views\"/" "$file" >"$rewritten"

if [[ $dry_run -eq 1 ]]; then
  cat "$rewritten"
  exit 0
fi

url=${KIBANA_URL:-http://127.0.0.1:5601}
url=${url%/}
endpoint="$url${space:+/s/$space}/api/saved_objects/_import?overwrite=true"

# curl reads this config from stdin: secrets stay out of argv (ps) and out of the output.
curl_config() {
  local escaped
  if [[ -n ${KIBANA_API_KEY:-} ]]; then
    escaped=${KIBANA_API_KEY//\\/\\\\}
    printf 'header = "Authorization: ApiKey %s"\n' "${escaped//\"/\\\"}"
  elif [[ -n ${KIBANA_USERNAME:-} ]]; then
    escaped="$KIBANA_USERNAME:${KIBANA_PASSWORD:-}"
    escaped=${escaped//\\/\\\\}
    printf 'user = "%s"\n' "${escaped//\"/\\\"}"
  fi
  if [[ -n ${KIBANA_CA_CERT:-} ]]; then
    printf 'cacert = "%s"\n' "$KIBANA_CA_CERT"
  fi
}

set +e
status=$(curl_config | curl --silent --show-error --config - \
  --connect-timeout 10 --max-time 120 \
  --output "$response" --write-out '%{http_code}' \
  -X POST "$endpoint" \
  -H 'kbn-xsrf: true' \
  -F "file=@$rewritten;filename=clickstream.ndjson;type=application/ndjson" 2>"$errors")
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  die "cannot reach Kibana at $url: $(tr '\n' ' ' <"$errors")(curl exit $rc); is it running, is KIBANA_URL right?"
fi

body=$(cat "$response")
if [[ $status != 2* ]]; then
  die "Kibana answered HTTP $status to $endpoint: $body"
fi
# A compact JSON answer: {"successCount":N,"success":true,...} or success:false with "errors".
if [[ $body != *'"success":true'* ]]; then
  if command -v jq >/dev/null && listed=$(jq -er '.errors | map("  \(.type) \(.id): \(.error)")
      | join("\n")' <<<"$body" 2>/dev/null); then
    body=$listed
  fi
  die "the import reported errors; the objects below were not imported, the others were:
$body"
fi
count=$(grep -o '"successCount":[0-9]*' <<<"$body" | cut -d: -f2)
echo "imported ${count:-?} saved objects into $url${space:+ (space $space)}; data view on $prefix-views"
