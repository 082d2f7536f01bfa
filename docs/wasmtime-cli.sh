#!/usr/bin/env bash
# Calls the HeyGen Video Agent component with the wasmtime CLI (48.x) against the local
# Runflow emulator: create-run, then poll-run with the returned id until the run ends.
# Everything listens on and talks to 127.0.0.1 only. docs/engines.md explains each command.
#
#   bash docs/wasmtime-cli.sh
#
# Optional: HEYGEN_AGENT (the heygen-agent binary) and HEYGEN_COMPONENT_WASM (the component)
# to use existing builds; otherwise `cargo build --release -p host-test` builds both (see
# docs/lib.sh, which this script shares with the other host scripts).
set -euo pipefail

if ! command -v wasmtime >/dev/null 2>&1; then
    echo "SKIP: wasmtime CLI not installed (cargo install wasmtime-cli --version 48.0.8 --locked)"
    exit 0
fi

# shellcheck source=docs/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_emulator "$tmp/emulator.out"
base_url="$started_url"
echo "emulator: $base_url"

# One call of one export. `-S http` gives the component wasi:http; `--env` sets exactly the
# variables it sees. A bare function name is looked up in every exported interface.
invoke() {
    wasmtime run -S http \
        --env RUNFLOW_API_KEY=emulator-key \
        --env "RUNFLOW_BASE_URL=$base_url" \
        --invoke "$1" "$wasm"
}

# The answer is one line of WAVE: `ok({id: "...", status: queued, terminal: false, ...})` or
# `err(<case>(...))`. These read the run's fields from it.
run_id_of() { sed -n 's/^ok({id: "\([^"]*\)".*/\1/p' "$1"; }
status_of() { grep -o 'status: [a-z%-]*' "$1" | head -n 1 | cut -d' ' -f2; }
terminal_of() { grep -o 'terminal: [a-z]*' "$1" | head -n 1 | cut -d' ' -f2; }

client_ref="wasmtime-cli-$(date +%s)-$$"
# WAVE: records are `{field: value}` with kebab-case names, options `some(x)` or `none`, lists
# `[...]`, enum cases bare (`portrait`), strings double-quoted.
create_call="create-run({prompt: \"A 20-second teaser for a neighbourhood bakery\", \
orientation: some(portrait), avatar: none, voice: none, style-id: none, file-urls: [], \
incognito-mode: none}, {callback-url: none, metadata: none, client-ref: some(\"$client_ref\")})"

invoke "$create_call" >"$tmp/create.txt" || fail "create-run failed: $(cat "$tmp/create.txt")"
echo "create-run: $(cut -c1-300 "$tmp/create.txt")"
run_id="$(run_id_of "$tmp/create.txt")"
[[ -n "$run_id" ]] || fail "create-run did not return a run"
[[ "$(status_of "$tmp/create.txt")" == queued ]] || fail "a new run should be queued"
grep -q "client-ref: some(\"$client_ref\")" "$tmp/create.txt" ||
    fail "the run does not carry the client-ref"

# The caller's polling loop. Against the real API sleep 5 s first, then 1.5 times longer each
# time up to 30 s; the emulator finishes a run in about two seconds, so 1 s is enough here.
status=""
for _ in $(seq 1 20); do
    invoke "poll-run(\"$run_id\")" >"$tmp/poll.txt" ||
        fail "poll-run failed: $(cat "$tmp/poll.txt")"
    [[ "$(run_id_of "$tmp/poll.txt")" == "$run_id" ]] ||
        fail "poll-run did not return run $run_id: $(cat "$tmp/poll.txt")"
    status="$(status_of "$tmp/poll.txt")"
    case "$status" in
        queued | dispatching | running | succeeded | partial-succeeded | failed | canceled) ;;
        *) fail "poll-run returned an unexpected status '$status'" ;;
    esac
    echo "poll-run: $status"
    [[ "$(terminal_of "$tmp/poll.txt")" == true ]] && break
    sleep 1
done
[[ "$(terminal_of "$tmp/poll.txt")" == true ]] || fail "run $run_id did not end in time"
echo "poll-run: $(cut -c1-300 "$tmp/poll.txt")"

echo "PASS: wasmtime created run $run_id and followed it to '$status'"
