#!/bin/bash
# Storage benchmark: qsnap's streaming S3 put against `curl --aws-sigv4`
# uploading the same bytes, on the same radosgw, in the same run; plus
# qsnap's peak RSS for 1 GiB and 3 GiB (it must not grow with the size).
#
# Usage: bench/storage_bench.sh BUILD_DIR [PART_MIB]
# Needs QSNAP_TEST_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY, _BUCKET (and
# optionally _REGION) in the environment. Objects are deleted afterwards.
set -euo pipefail

BUILD=${1:?usage: storage_bench.sh BUILD_DIR [PART_MIB]}
PART=${2:-8}
BENCH="$BUILD/bench/storage_bench"
: "${QSNAP_TEST_S3_ENDPOINT:?}" "${QSNAP_TEST_S3_ACCESS_KEY:?}" "${QSNAP_TEST_S3_SECRET_KEY:?}"
: "${QSNAP_TEST_S3_BUCKET:?}"
REGION=${QSNAP_TEST_S3_REGION:-us-east-1}
[ -x "$BENCH" ] || { echo "storage_bench: $BENCH not built" >&2; exit 2; }

TMPF=$(mktemp "${TMPDIR:-/tmp}/qsnap-bench.XXXXXX")
CURL_KEY="bench/curl-$$"
cleanup() {
    rm -f "$TMPF"
    curl -sS -o /dev/null -X DELETE --aws-sigv4 "aws:amz:$REGION:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$CURL_KEY" || true
}
trap cleanup EXIT

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

run_qsnap() { # MIB -> "mib_per_s peak_rss_mib"
    local out
    out=$("$BENCH" put "$1" "$PART")
    echo "$(echo "$out" | field mib_per_s) $(( $(echo "$out" | field peak_rss_kib) / 1024 ))"
}

run_curl() { # FILE MIB -> mib_per_s
    local t code
    read -r code t < <(curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' \
        --aws-sigv4 "aws:amz:$REGION:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$1" \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$CURL_KEY")
    [ "$code" = 200 ] || { echo "curl upload failed: HTTP $code" >&2; exit 1; }
    awk -v m="$2" -v t="$t" 'BEGIN { printf "%.1f", m / t }'
}

# Warm-up (the first multipart upload on a fresh radosgw creates a pool).
"$BENCH" put 40 "$PART" >/dev/null

"$BENCH" emit 1024 >"$TMPF"
read -r q1 rss1 < <(run_qsnap 1024)
c1=$(run_curl "$TMPF" 1024)
read -r q1b rss1b < <(run_qsnap 1024)
c1b=$(run_curl "$TMPF" 1024)
rm -f "$TMPF"
read -r q3 rss3 < <(run_qsnap 3072)

limit=$(( PART * 3 + 16 ))
printf '\nqsnap storage benchmark (part size %d MiB, unknown length, multipart, 3 part buffers, 2 in flight)\n' "$PART"
printf '%-34s %12s %14s\n' "upload" "MiB/s" "peak RSS MiB"
printf '%-34s %12s %14s\n' "qsnap put 1 GiB (run 1 / run 2)" "$q1 / $q1b" "$rss1 / $rss1b"
printf '%-34s %12s %14s\n' "curl --aws-sigv4 -T 1 GiB" "$c1 / $c1b" "-"
printf '%-34s %12s %14s\n' "qsnap put 3 GiB" "$q3" "$rss3"
awk -v a="$q1" -v b="$q1b" -v c="$c1" -v d="$c1b" \
    'BEGIN { printf "ratio qsnap/curl (mean of 2 runs): %.2f\n", (a + b) / (c + d) }'
printf 'RSS limit part x 3 + 16 MiB = %d MiB: %s\n' "$limit" \
    "$([ "$rss1" -lt "$limit" ] && [ "$rss3" -lt "$limit" ] && echo OK || echo EXCEEDED)"
[ "$rss1" -lt "$limit" ] && [ "$rss3" -lt "$limit" ]
