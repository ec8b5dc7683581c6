#!/usr/bin/env bash
# Load benchmark: rtpark against a minimal epoll relay loop, measured in the same run
# (benches/load.rs). Needs root for SCHED_FIFO (or pass --sched nice / normal).
#
#   scripts/bench-load.sh                 the issue's two runs: 1000 and 2000 calls, 60 s
#   scripts/bench-load.sh --calls 1000 --seconds 10 --target baseline   one custom run
#   scripts/bench-load.sh --mode hold --legs 1000 --seconds 10          a music-on-hold run
#                                         (scripts/bench-moh.sh runs the standard MOH set)
#
# Every run prints a table per engine; the JSON lines (one per engine, plus the ratio)
# are appended to target/bench-load.jsonl with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench load --no-run >/dev/null 2>&1 || cargo bench --bench load --no-run
out=target/bench-load.jsonl

run() {
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

if [ $# -gt 0 ]; then
    run "$@"
else
    run --calls 1000 --seconds 60
    run --calls 2000 --seconds 60
fi
echo "JSON lines appended to $out" >&2
