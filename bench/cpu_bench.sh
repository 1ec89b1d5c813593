#!/bin/bash
# CPU benchmark: qsnap's CPU seconds per GiB backed up (user + sys of the
# qsnap process, all its threads, from /usr/bin/time; `none` compression) to
# radosgw and to a file:// directory, next to the floor measured in the same
# run on the same bytes:
#   S3 floor      sha256sum of the snapshot + curl --aws-sigv4 PUT of it
#   file floor    sha256sum of the snapshot + dd bs=128K conv=fsync copy of it
# and a stricter floor that also counts the download and hashes the way
# qsnap does (OpenSSL, SHA-NI where the CPU has it):
#   curl GET of the snapshot from the stand-in + openssl dgst -sha256 +
#   the PUT (S3) or the dd copy (file).
# Every tool's CPU is its own user + sys. Each run measures everything once;
# runs alternate the order. Prints the median and range over the runs of
# each figure and of the ratios taken within each run.
#
# Usage: bench/cpu_bench.sh BUILD_DIR [BASE_BUILD_DIR]
#   BASE_BUILD_DIR  a second qsnap (e.g. a release build of an older commit)
#                   measured in the same runs, for before/after figures.
# Knobs: QSNAP_BENCH_MIB (1024), QSNAP_BENCH_RUNS (5), QSNAP_BENCH_REUSE_RGW=1
# (see backup_common.sh). Starts its own radosgw and stand-in; needs about
# 6 x QSNAP_BENCH_MIB of free disk.
# CPU_* and RSS_* are set through printf -v.
# shellcheck disable=SC2154
set -euo pipefail
# shellcheck source=backup_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"

bc_init "${1:?usage: cpu_bench.sh BUILD_DIR [BASE_BUILD_DIR]}"
NEW=$QSNAP
BASE=""
if [ -n "${2:-}" ]; then
    BASE="$2/qsnap"
    [ -x "$BASE" ] || BASE="$2/src/qsnap"
    [ -x "$BASE" ] || { echo "bench: no qsnap binary in $2" >&2; exit 2; }
fi
MIB=${QSNAP_BENCH_MIB:-1024}
RUNS=${QSNAP_BENCH_RUNS:-5}
for tool in sha256sum openssl dd curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }
done
# Objects are deleted after each run; radosgw frees their space within
# about 20 s (its garbage collection), so room for a few runs is enough.
export QSNAP_RGW_BYTES=${QSNAP_RGW_BYTES:-$(((MIB * 8 + 4096) * 1048576))}
bc_start_rgw
bc_start_standin
bc_qsnap_env
export QSNAP_COMPRESSION=none QSNAP_LOG_LEVEL=info

bc_log "creating a $MIB MiB collection"
bc_collection bench "$MIB"
read -r SNAP SIZE < <(bc_snapshot bench)
FILE="$BC_W/snap.bin"
curl -sSf -o "$FILE" "$STANDIN/collections/bench/snapshots/$SNAP"
sync
DEST="$BC_W/dest"
mkdir -p "$DEST"

t() { # TAG CMD... : runs CMD under /usr/bin/time, CPU into CPU_TAG
    local tag=$1
    shift
    /usr/bin/time -f '%U %S %e %M' -o "$BC_W/time.$tag" "$@" >"$BC_W/out.$tag" 2>"$BC_W/err.$tag" || {
        echo "bench: $tag failed:" >&2
        tail -n 5 "$BC_W/out.$tag" "$BC_W/err.$tag" >&2
        exit 1
    }
    printf -v "CPU_$tag" '%s' "$(bc_cpu "$BC_W/time.$tag")"
    printf -v "RSS_$tag" '%s' "$(awk '{ printf "%.1f", $4 / 1024 }' "$BC_W/time.$tag")"
}

m_get() { t get curl -sSf -o /dev/null "$STANDIN/collections/bench/snapshots/$SNAP"; }
m_sha() { t sha sha256sum "$FILE"; }
m_ossl() { t ossl openssl dgst -sha256 "$FILE"; }
m_put() {
    t put curl -sSf --aws-sigv4 "aws:amz:${QSNAP_TEST_S3_REGION:-us-east-1}:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o /dev/null -T "$FILE" \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$BC_PREFIX/curl/object"
    bc_s3 DELETE "$BC_PREFIX/curl/object" -o /dev/null
}
m_dd() {
    t dd dd if="$FILE" of="$DEST/dd.bin" bs=128K conv=fsync status=none
    rm -f "$DEST/dd.bin"
}
m_qsnap() { # TAG BINARY: one backup to S3, one to file://
    local tag=$1 bin=$2 p="$BC_PREFIX/$1-$r"
    QSNAP_DESTINATION="s3://$QSNAP_TEST_S3_BUCKET/$p" t "${tag}s3" "$bin" backup -c bench
    bc_delete_under "$p"
    QSNAP_DESTINATION="file://$DEST" t "${tag}file" "$bin" backup -c bench
    rm -rf "${DEST:?}"/*
}
STEPS=(m_get m_sha m_ossl m_put m_dd "m_qsnap new $NEW")
[ -n "$BASE" ] && STEPS+=("m_qsnap base $BASE")
declare -A V
add() { V[$1]="${V[$1]:-} $2"; }
GIB=$(awk -v s="$SIZE" 'BEGIN { print s / 1073741824 }')
per() { awk -v c="$1" -v g="$GIB" 'BEGIN { printf "%.3f", c / g }'; }
for r in $(seq "$RUNS"); do
    order=("${STEPS[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#STEPS[@]} - 1; i >= 0; i--)); do order+=("${STEPS[$i]}"); done
    fi
    bc_log "run $r of $RUNS"
    for s in "${order[@]}"; do $s; done
    line=""
    for k in get sha ossl put dd news3 newfile ${BASE:+bases3 basefile}; do
        line="$line $k $(eval echo "\$CPU_$k")"
    done
    bc_log "run $r CPU seconds:$line"
    for k in get sha ossl put dd news3 newfile; do add "$k" "$(per "$(eval echo "\$CPU_$k")")"; done
    add rss_new "$RSS_news3"
    floor_s3=$(per "$(awk -v a="$CPU_sha" -v b="$CPU_put" 'BEGIN { print a + b }')")
    floor_f=$(per "$(awk -v a="$CPU_sha" -v b="$CPU_dd" 'BEGIN { print a + b }')")
    strict_s3=$(per "$(awk -v a="$CPU_get" -v b="$CPU_ossl" -v c="$CPU_put" 'BEGIN { print a + b + c }')")
    strict_f=$(per "$(awk -v a="$CPU_get" -v b="$CPU_ossl" -v c="$CPU_dd" 'BEGIN { print a + b + c }')")
    add floor_s3 "$floor_s3"
    add floor_f "$floor_f"
    add strict_s3 "$strict_s3"
    add strict_f "$strict_f"
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
    add r_new_s3 "$(ratio "$(per "$CPU_news3")" "$floor_s3")"
    add r_new_f "$(ratio "$(per "$CPU_newfile")" "$floor_f")"
    add rs_new_s3 "$(ratio "$(per "$CPU_news3")" "$strict_s3")"
    add rs_new_f "$(ratio "$(per "$CPU_newfile")" "$strict_f")"
    if [ -n "$BASE" ]; then
        add bases3 "$(per "$CPU_bases3")"
        add basefile "$(per "$CPU_basefile")"
        add rss_base "$RSS_bases3"
        add r_base_s3 "$(ratio "$(per "$CPU_bases3")" "$floor_s3")"
        add r_base_f "$(ratio "$(per "$CPU_basefile")" "$floor_f")"
        add rs_base_s3 "$(ratio "$(per "$CPU_bases3")" "$strict_s3")"
        add rs_base_f "$(ratio "$(per "$CPU_basefile")" "$strict_f")"
    fi
done

# ---- report ------------------------------------------------------------------
fmt() { # KEY -> "median [min-max]"
    # shellcheck disable=SC2086
    read -r md lo hi < <(bc_stats ${V[$1]})
    printf '%s [%s-%s]' "$md" "$lo" "$hi"
}
row() { printf '%-52s %-20s %-20s\n' "$1" "$2" "$3"; }
printf '\nqsnap CPU benchmark: %s MiB snapshot (%s bytes), none compression, %s runs\n' \
    "$MIB" "$SIZE" "$RUNS"
printf 'CPU seconds (user + sys) per GiB; median [min-max] over the runs\n\n'
row "" "S3 (radosgw)" "file://"
row "qsnap backup ($NEW)" "$(fmt news3)" "$(fmt newfile)"
[ -n "$BASE" ] && row "qsnap backup ($BASE)" "$(fmt bases3)" "$(fmt basefile)"
row "floor: sha256sum + curl PUT | dd copy" "$(fmt floor_s3)" "$(fmt floor_f)"
row "  sha256sum" "$(fmt sha)" "$(fmt sha)"
row "  curl --aws-sigv4 -T PUT | dd bs=128K conv=fsync" "$(fmt put)" "$(fmt dd)"
row "strict floor: curl GET + openssl + PUT | dd" "$(fmt strict_s3)" "$(fmt strict_f)"
row "  curl GET from the stand-in" "$(fmt get)" "$(fmt get)"
row "  openssl dgst -sha256" "$(fmt ossl)" "$(fmt ossl)"
row "ratio qsnap / floor (target <= 1.3)" "$(fmt r_new_s3)" "$(fmt r_new_f)"
row "ratio qsnap / strict floor" "$(fmt rs_new_s3)" "$(fmt rs_new_f)"
if [ -n "$BASE" ]; then
    row "ratio base / floor" "$(fmt r_base_s3)" "$(fmt r_base_f)"
    row "ratio base / strict floor" "$(fmt rs_base_s3)" "$(fmt rs_base_f)"
fi
printf '%-52s %s\n' "peak RSS of the S3 backup, MiB (new)" "$(fmt rss_new)"
[ -n "$BASE" ] && printf '%-52s %s\n' "peak RSS of the S3 backup, MiB (base)" "$(fmt rss_base)"
# shellcheck disable=SC2086
read -r worst _ < <(bc_stats ${V[r_new_s3]} ${V[r_new_f]} | awk '{ print $3 }')
awk -v w="$worst" 'BEGIN { printf "worst ratio qsnap / floor %.2f (target <= 1.3): %s\n", w,
    w <= 1.3 ? "OK" : "MISSED" }'
