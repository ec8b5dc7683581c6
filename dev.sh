#!/usr/bin/env bash
# rtpark's two commands:
#   ./dev.sh run [rtpark flags]   build and run the engine on embedded defaults
#   ./dev.sh test                 install what the tests need, then fmt, clippy, all tests
# Both install missing system packages themselves (as root, with apt-get).
set -euo pipefail
cd "$(dirname "$0")"

# System packages the build and the tests need, by Debian package name.
# sox: the independent resampler tests/moh-audio.rs compares music on hold against.
# kamailio, sip-tester: the real SIP proxy and SIP load tool of tests/interop-kamailio.rs.
PACKAGES=(pkg-config libopus-dev sox)
TEST_PACKAGES=(kamailio sip-tester)

ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "dev.sh: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_rust_components() {
    for c in rustfmt clippy; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            rustup component add "$c"
        fi
    done
}

case "${1:-}" in
run)
    shift
    ensure_packages "${PACKAGES[@]}"
    cargo build --release --quiet
    args=("$@")
    # Non-root users cannot create /run/rtpark: put the socket somewhere writable.
    if [ "$(id -u)" -ne 0 ] && [[ " $* " != *" --listen-native "* ]]; then
        sock="${XDG_RUNTIME_DIR:-/tmp}/rtpark/native.sock"
        args+=(--listen-native "unix:$sock")
        echo "dev.sh: control socket $sock (use: target/release/rtpark ctl --socket $sock ping)" >&2
    fi
    exec target/release/rtpark "${args[@]}"
    ;;
test)
    ensure_packages "${PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    ensure_rust_components
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test
    ;;
*)
    echo "usage: ./dev.sh run [rtpark flags] | ./dev.sh test" >&2
    exit 2
    ;;
esac
