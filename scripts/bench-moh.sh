#!/usr/bin/env bash
# Music-on-hold benchmark: held legs on one rtpark worker against a minimal sender of
# the same packets on the same core (benches/load.rs --mode hold; see
# benches/load/hold.rs for how each figure is taken). Needs root for SCHED_FIFO (or
# pass --sched nice / normal).
#
#   scripts/bench-moh.sh                  the standard runs (below)
#   scripts/bench-moh.sh --legs 2000 --seconds 10 --target rtpark    one custom run
#
# Standard runs:
#   1. 1000 and 5000 held legs, 30 s window, SCHED_FIFO: baseline and rtpark for each
#      size, the engine overhead per packet, and the memory fit over the two sizes
#      (the RSS that does not grow with listeners vs the RSS per held leg).
#   2. 5000 held legs, 30 s window, --sched nice: when the engine saturates its core,
#      SCHED_FIFO is throttled at 95 % and starves rtpark's control thread, so the
#      saturated figures are taken again under the normal class at nice -20.
#   3. The baseline sending through io_uring instead of send(2), at 1000 legs.
#
# Every run prints its tables; the JSON lines (one per target, plus the overhead and
# memory-fit lines) are appended to target/bench-load.jsonl with the command.
# BENCH_WAIT_IDLE=<s> (default 120) waits up to that long before each run for the
# machine to be idle (under 15 % busy over 2 s, no other rtpark process), since other
# jobs on the two cores disturb the figures (and another rtpark may hold ports of the
# media range, --port-min); 0 disables the wait.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench load --no-run >/dev/null 2>&1 || cargo bench --bench load --no-run
out=target/bench-load.jsonl
wait_idle_s=${BENCH_WAIT_IDLE:-120}

# Busy share of all CPUs over 2 s, in percent (from /proc/stat).
busy_pct() {
    local a b
    a=$(head -1 /proc/stat)
    sleep 2
    b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y);
        idle = (y[5] + y[6]) - (x[5] + x[6]);
        total = 0; for (i = 2; i <= 11; i++) total += y[i] - x[i];
        printf "%d\n", (total > 0) ? (total - idle) * 100 / total : 0 }'
}

wait_idle() {
    [ "$wait_idle_s" -gt 0 ] || return 0
    local start=$SECONDS busy others
    while :; do
        busy=$(busy_pct)
        # Other rtpark processes (tests, other benchmarks) load the cores and may
        # hold ports in our media range.
        others=$({ pgrep -x rtpark || true; } | wc -l)
        if [ "$busy" -lt 15 ] && [ "$others" -eq 0 ]; then
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$wait_idle_s" ]; then
            echo "### machine still ${busy} % busy, ${others} other rtpark process(es), after ${wait_idle_s} s; running anyway" >&2
            return 0
        fi
    done
}

run() {
    wait_idle
    echo "### cargo bench --bench load -- $*" >&2
    local log
    log=$(mktemp)
    # tee to our stderr through the pipe (not /dev/stderr, which reopens and may
    # truncate a redirected log), then keep the JSON lines.
    cargo bench --bench load -- --json "$@" 2>&1 | tee "$log" >&2 \
        || echo "### that run failed (see above)" >&2
    grep '^{' "$log" \
        | sed "s|^{|{\"command\":\"cargo bench --bench load -- $*\",\"date\":\"$(date -u +%FT%TZ)\",|" \
        >>"$out" || true
    rm -f "$log"
}

# rtpark's media ports: below the default 20000, which other benchmarks and tests on
# this machine also use (a port already bound makes create_leg fail).
ports=(--port-min 10000)
if [ $# -gt 0 ]; then
    run --mode hold "${ports[@]}" "$@"
else
    run --mode hold "${ports[@]}" --legs 1000,5000 --seconds 30
    run --mode hold "${ports[@]}" --legs 5000 --seconds 30 --sched nice
    run --mode hold --legs 1000 --seconds 30 --target moh-baseline --moh-baseline-io uring
fi
echo "JSON lines appended to $out" >&2
