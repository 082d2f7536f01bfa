# Shared by the scripts under docs/ that run the component in other hosts. Sourced, after the
# script has checked that its host is installed. It finds (or builds) the emulator and the
# component, makes a temporary folder, and on exit stops every process the script recorded in
# `pids` and removes the folder.
#
# Sets: repo, agent, wasm, default_wasm, tmp, pids. Defines: fail, start_emulator (which sets
# started_url). Optional input: HEYGEN_AGENT and HEYGEN_COMPONENT_WASM, to use existing
# builds; otherwise `cargo build --release -p host-test` builds both.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
default_wasm="$target_dir/wasm/wasm32-wasip2/component/heygen_video_agent.wasm"
agent="${HEYGEN_AGENT:-$target_dir/release/heygen-agent}"
wasm="${HEYGEN_COMPONENT_WASM:-$default_wasm}"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

if [[ ! -x "$agent" || ! -f "$wasm" ]]; then
    echo "building the emulator and the component (cargo build --release -p host-test)"
    (cd "$repo" && cargo build --release -p host-test)
fi
[[ -x "$agent" ]] || fail "no heygen-agent binary at $agent"
[[ -f "$wasm" ]] || fail "no component at $wasm"

# True while the process lives (an exited child not yet waited for does not count).
running() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

tmp="$(mktemp -d)"
pids=()
cleanup() {
    local pid _
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Give each process ten seconds to stop, then end it.
        for _ in $(seq 1 100); do
            running "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Starts an emulator on a free loopback port, records its pid and sets `started_url` to its
# base URL.
started_url=""
start_emulator() {
    local out="$1" _
    started_url=""
    "$agent" emulator --addr 127.0.0.1:0 >"$out" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 100); do
        started_url="$(sed -n 's/^export RUNFLOW_BASE_URL=\([^ ]*\) .*/\1/p' "$out")"
        [[ -n "$started_url" ]] && break
        sleep 0.1
    done
    [[ "$started_url" == http://127.0.0.1:* ]] ||
        fail "the emulator did not start: $(cat "$out")"
}
