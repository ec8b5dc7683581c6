#!/usr/bin/env bash
# Side by side: the same relay load against rtpark and against Debian's rtpengine
# (userspace only, --table=-1), one after the other in one run of the load generator
# (benches/load.rs --engine both), ending with one table: CPU per relayed packet,
# loss, p50/p99 latency, RSS per call and call setups per second.
#
#   scripts/bench-vs-rtpengine.sh                    1000 calls, 30 s, 4000-call setup phase
#   scripts/bench-vs-rtpengine.sh --calls 100 --seconds 5 --setup-calls 500   a smoke run
#
# Arguments are passed on to the generator and replace the defaults they name (e.g.
# `--calls 2000 --sched nice`). Needs root: it installs
# rtpengine-daemon when missing, and the generator uses SCHED_FIFO.
#
# The generator starts rtpengine itself, pinned to --engine-cpu, as
#   rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1
#     --interface=127.0.0.1 --listen-ng=127.0.0.1:<free port> --port-min=.. --port-max=..
#     --num-threads=<--workers> --delete-delay=0 --timeout=3600
# and stops it (SIGTERM, then SIGKILL) at the end of its run, on an error and on
# Ctrl-C; it also dies with the generator (PR_SET_PDEATHSIG). rtpark is driven over
# ng (--control ng) when its binary accepts --listen-ng, else over its native socket.
#
# The JSON lines (one per engine, plus the ratios) are appended to
# target/bench-vs-rtpengine.jsonl with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rtpengine >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "rtpengine is not installed; run as root (apt-get install rtpengine-daemon) or install it first" >&2
        exit 1
    fi
    echo "### installing rtpengine-daemon" >&2
    # policy-rc.d keeps the package's service from starting during the install.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rtpengine-daemon >&2
    [ -n "$made_policy" ] && rm -f "$policy"
fi
# The generator starts its own rtpengine; a service instance would only compete for
# the cores (and could hold ports). Never fails if there is no systemd.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now rtpengine-daemon >/dev/null 2>&1 || true
fi

cargo build --release --bin rtpark >/dev/null 2>&1 || cargo build --release --bin rtpark
build=$(cargo bench --bench load --no-run 2>&1) || { echo "$build" >&2; exit 1; }
exe=$(sed -n 's/.*Executable benches\/load\.rs (\(.*\))$/\1/p' <<<"$build" | tail -n 1)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "cannot find the load generator's executable in cargo's output:" >&2
    echo "$build" >&2
    exit 1
fi

control=native
if target/release/rtpark --help 2>/dev/null | grep -q -- '--listen-ng'; then
    control=ng
else
    echo "### this rtpark has no --listen-ng: driving it over its native socket (setups/s are then not like for like)" >&2
fi

# Defaults, each unless the caller gave that flag.
given() {
    local flag=$1 a
    for a in "${user_args[@]}"; do
        [ "$a" = "$flag" ] || [ "${a%%=*}" = "$flag" ] && return 0
    done
    return 1
}
user_args=("$@")
args=(--engine both --json)
for pair in "--control $control" "--calls 1000" "--seconds 30" "--setup-calls 4000"; do
    read -r flag value <<<"$pair"
    given "$flag" || args+=("$flag" "$value")
done
args+=("$@")
out=target/bench-vs-rtpengine.jsonl
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "### cargo bench --bench load -- ${args[*]}" >&2
# The generator and the viewer of its output run in the background, so that a trap
# can run while they do (bash runs traps only between foreground commands): Ctrl-C or
# TERM reaches the generator as SIGINT, and it winds down and stops the engine it
# started (the viewer ignores SIGINT and shows the summary).
"$exe" --bench "${args[@]}" >"$log" 2>&1 &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
tail -n +1 -f --pid="$pid" "$log" 2>/dev/null | grep --line-buffered -v '^{' &
viewer=$!
set +e
while :; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break
done
wait "$viewer"
set -e

grep '^{' "$log" \
    | sed "s|^{|{\"command\":\"cargo bench --bench load -- ${args[*]}\",\"date\":\"$(date -u +%FT%TZ)\",|" \
    >>"$out" || true
echo "JSON lines appended to $out" >&2
exit "$status"
