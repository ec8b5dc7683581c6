#!/usr/bin/env bash
# Call-park benchmark (benches/park.rs): 5,000 parked legs across 100 lots, park and
# retrieve driven over the native socket, against the release engine.
#
#   scripts/bench-park.sh                          the issue's run: 5000 legs, 100 lots, 10 s
#   scripts/bench-park.sh --legs 1000 --seconds 5  one custom run (any bench option)
#
# Prints the table; the JSON lines (one per phase/op, per phase's engine CPU, and a
# summary) are appended to target/bench-park.jsonl with the command that produced them.
# The run shares the machine with whatever else is running: the table's "other
# processes" column says how much that was.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench park --no-run >/dev/null 2>&1 || cargo bench --bench park --no-run
out=target/bench-park.jsonl

run() {
    echo "### cargo bench --bench park -- $*" >&2
    cargo bench --bench park -- --json "$@" 2>&1 | tee /dev/stderr \
        | grep '^{' \
        | sed "s|^{|{\"command\":\"cargo bench --bench park -- $*\",\"date\":\"$(date -u +%FT%TZ)\",|" \
        >>"$out" || echo "### that run failed (see above)" >&2
}

if [ $# -gt 0 ]; then
    run "$@"
else
    run --legs 5000 --lots 100 --seconds 10
fi
echo "JSON lines appended to $out" >&2
