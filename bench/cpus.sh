# shellcheck shell=bash
# CPU split for the benchmarks (sourced, not run). In production the S3
# server runs on other machines than the Qdrant pod; on a small machine the
# benchmark's radosgw otherwise takes its CPU from the very transfers that are
# measured. With both knobs set, radosgw (and its OSD and monitor) run on
# QSNAP_BENCH_S3_CPUS and everything else the benchmark starts (qsnap, the
# stand-in, curl, openssl) on QSNAP_BENCH_CPUS, for qsnap and for the curl
# transfers it is compared with alike. Unset (the default): no pinning.
# Every benchmark built on backup_common.sh honours them, and restore_bench
# and load_bench.
#   QSNAP_BENCH_S3_CPUS=0 QSNAP_BENCH_CPUS=1 bench/backup_bench.sh build

# BENCH_NCPU: the CPUs this benchmark may use, counted before any pinning.
BENCH_NCPU=$(nproc)

bench_cpus_check() {
    if [ -n "${QSNAP_BENCH_S3_CPUS:-}${QSNAP_BENCH_CPUS:-}" ]; then
        if [ -z "${QSNAP_BENCH_S3_CPUS:-}" ] || [ -z "${QSNAP_BENCH_CPUS:-}" ]; then
            echo "bench: set both QSNAP_BENCH_S3_CPUS and QSNAP_BENCH_CPUS, or neither" >&2
            exit 2
        fi
        if [ "${QSNAP_BENCH_REUSE_RGW:-0}" = 1 ]; then
            echo "bench: QSNAP_BENCH_S3_CPUS cannot pin a radosgw the benchmark did not start" \
                "(QSNAP_BENCH_REUSE_RGW=1)" >&2
            exit 2
        fi
        command -v taskset >/dev/null || { echo "bench: taskset missing (util-linux)" >&2; exit 2; }
        taskset -c "$QSNAP_BENCH_S3_CPUS" true 2>/dev/null ||
            { echo "bench: QSNAP_BENCH_S3_CPUS=$QSNAP_BENCH_S3_CPUS is not a CPU list here" >&2; exit 2; }
        # qsnap would warn about unknown QSNAP_ variables in its environment.
        export -n QSNAP_BENCH_S3_CPUS QSNAP_BENCH_CPUS
        # Pins this shell; what it starts from now on inherits the mask.
        taskset -p -c "$QSNAP_BENCH_CPUS" $$ >/dev/null ||
            { echo "bench: QSNAP_BENCH_CPUS=$QSNAP_BENCH_CPUS is not a CPU list here" >&2; exit 2; }
    fi
}

# bench_s3_run CMD...: runs CMD (the radosgw start script) on the S3 CPUs.
bench_s3_run() {
    if [ -n "${QSNAP_BENCH_S3_CPUS:-}" ]; then
        taskset -c "$QSNAP_BENCH_S3_CPUS" "$@"
    else
        "$@"
    fi
}

# bench_cpus_describe: one line for the report.
bench_cpus_describe() {
    if [ -n "${QSNAP_BENCH_S3_CPUS:-}" ]; then
        echo "CPU split: radosgw on CPUs $QSNAP_BENCH_S3_CPUS, everything else on CPUs $QSNAP_BENCH_CPUS"
    else
        echo "no CPU split: radosgw, the stand-in, curl and qsnap share the same $BENCH_NCPU CPUs"
    fi
}
