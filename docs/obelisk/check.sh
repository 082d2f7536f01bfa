#!/usr/bin/env bash
# Runs the HeyGen Video Agent component inside Obelisk 0.38.3 against the local Runflow
# emulator, using docs/obelisk/deployment.toml as committed and a loopback copy of
# docs/obelisk/server.toml. It submits create-run, then poll-run with the returned id, and
# checks both answers; then checks that a permanent error (an unknown run) is attempted once
# and a transient one (the emulator stopped) is retried by Obelisk. Everything listens on and
# talks to 127.0.0.1 only.
#
#   bash docs/obelisk/check.sh
#
# Optional: HEYGEN_AGENT (the heygen-agent binary) and HEYGEN_COMPONENT_WASM (the component)
# to use existing builds; otherwise `cargo build --release -p host-test` builds both (see
# docs/lib.sh, which this script shares with the other host scripts).
set -euo pipefail

if ! command -v obelisk >/dev/null 2>&1; then
    echo "SKIP: obelisk not installed (cargo install obelisk --version 0.38.3 --locked," \
        "needs protobuf-compiler)"
    exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docs/lib.sh
source "$here/../lib.sh"
ffqn_prefix='runflow:heygen-video-agent/runs@0.1.0'

if command -v jq >/dev/null 2>&1; then
    json_tool=jq
elif command -v python3 >/dev/null 2>&1; then
    json_tool=python3
else
    fail "reading Obelisk's JSON output needs jq or python3"
fi

# Prints one field of the `ok` run in an Obelisk JSON result file: `id`, or `status` (the
# case name, with the payload of `other(...)` dropped). Prints nothing for an `error`.
ok_field() {
    local file="$1" field="$2"
    if [[ "$json_tool" == jq ]]; then
        jq -r --arg f "$field" '.ok // empty | .[$f]
            | if type == "object" then (keys | .[0]) else . end // empty' "$file"
    else
        python3 - "$file" "$field" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1])).get("ok") or {}
value = run.get(sys.argv[2])
if isinstance(value, dict):
    value = next(iter(value), None)
if value is not None:
    print(value)
EOF
    fi
}

start_emulator "$tmp/emulator.out"
emulator_url="$started_url"
echo "emulator: $emulator_url"

# A free port for Obelisk's API: a second emulator binds 127.0.0.1:0, then gives it back.
start_emulator "$tmp/probe.out"
kill "${pids[-1]}" 2>/dev/null || true
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'
api_addr="${started_url#http://}"
api="http://$api_addr"

# The committed server settings, moved to a free port and into the temporary folder.
# shellcheck disable=SC2016 # the `${...}` are Obelisk's path prefixes, not shell expansions
sed -e "s|^api.listening_addr = .*|api.listening_addr = \"$api_addr\"|" \
    -e 's|\${DATA_DIR}/heygen-video-agent|${SERVER_CONFIG_DIR}|' \
    -e 's|\${CACHE_DIR}/heygen-video-agent|${SERVER_CONFIG_DIR}|' \
    "$here/server.toml" >"$tmp/server.toml"
grep -q "^api.listening_addr = \"$api_addr\"" "$tmp/server.toml" ||
    fail "could not set the API address in the server settings"

deployment="$here/deployment.toml"
if [[ "$wasm" != "$default_wasm" ]]; then
    # The committed file names the default build output; point a copy at the given component.
    sed "s|^location = .*|location = \"$wasm\"|" "$deployment" >"$tmp/deployment.toml"
    deployment="$tmp/deployment.toml"
fi

# The host's key is the emulator's; the component sees only Obelisk's placeholder, so a
# successful create also shows that the placeholder was swapped on the way out. The
# component's own retries are cut to two quick ones (through the deployment's env_vars), so
# that the retry check below sees Obelisk's retry within seconds.
(
    export RUNFLOW_BASE_URL="$emulator_url" RUNFLOW_API_KEY=emulator-key
    export RUNFLOW_RETRY_MAX_ATTEMPTS=2 RUNFLOW_RETRY_BASE_DELAY_MS=50
    unset RUNFLOW_RETRY_MAX_DELAY_MS RUNFLOW_RETRY_BUDGET_MS RUNFLOW_CONNECT_TIMEOUT_MS
    exec obelisk server run --server-config "$tmp/server.toml" -d "$deployment"
) >"$tmp/obelisk.log" 2>&1 &
pids+=("$!")
obelisk_pid="$!"

echo "waiting for obelisk on $api (it compiles the component first)"
ready=""
for _ in $(seq 1 300); do
    kill -0 "$obelisk_pid" 2>/dev/null || break
    if obelisk component list -a "$api" 2>/dev/null | grep -q 'heygen-video-agent/runs'; then
        ready=yes
        break
    fi
    sleep 1
done
if [[ -z "$ready" ]]; then
    tail -n 40 "$tmp/obelisk.log" >&2 || true
    fail "obelisk did not serve the component"
fi

# Submits a call and waits for its result, under an execution id of our own (for `attempts`).
submit() {
    local function="$1" params="$2" out="$3" id="${4:-$(obelisk generate execution-id)}"
    if command -v timeout >/dev/null 2>&1; then
        timeout 300 obelisk execution submit -a "$api" -e "$id" -f --json \
            "$ffqn_prefix.$function" "$params" >"$out"
    else
        obelisk execution submit -a "$api" -e "$id" -f --json "$ffqn_prefix.$function" \
            "$params" >"$out"
    fi
}

# How many times Obelisk has started an execution (one `locked` event per attempt).
attempts() {
    obelisk execution events -a "$api" --json --limit 100 "$1" | grep -c '"locked"' || true
}

# Obelisk's JSON: records are objects keyed by field name (snake_case; kebab-case is read
# too), absent `option` fields are none, `null` is none, enums and payload-free variant
# cases are strings.
client_ref="obelisk-check-$(date +%s)-$$"
create_params='[{"prompt": "A 20-second teaser for a neighbourhood bakery",
  "orientation": "portrait", "avatar": null, "voice": null, "style_id": null,
  "file_urls": [], "incognito_mode": null},
 {"callback_url": null, "metadata": null, "client_ref": "'"$client_ref"'"}]'
submit create-run "$create_params" "$tmp/create.json" ||
    fail "create-run submission failed: $(cat "$tmp/create.json")"
echo "create-run: $(tr -d '\n' <"$tmp/create.json" | cut -c1-300)"

run_id="$(ok_field "$tmp/create.json" id)"
status="$(ok_field "$tmp/create.json" status)"
[[ -n "$run_id" ]] || fail "create-run did not return a run: $(cat "$tmp/create.json")"
[[ "$status" == queued ]] || fail "a new run should be queued, got '$status'"
grep -q "\"$client_ref\"" "$tmp/create.json" || fail "the run does not carry the client-ref"

submit poll-run "[\"$run_id\"]" "$tmp/poll.json" ||
    fail "poll-run submission failed: $(cat "$tmp/poll.json")"
echo "poll-run: $(tr -d '\n' <"$tmp/poll.json" | cut -c1-300)"

[[ "$(ok_field "$tmp/poll.json" id)" == "$run_id" ]] ||
    fail "poll-run did not return run $run_id: $(cat "$tmp/poll.json")"
status="$(ok_field "$tmp/poll.json" status)"
case "$status" in
    queued | dispatching | running | succeeded | partial_succeeded | failed | canceled) ;;
    *) fail "poll-run returned an unexpected status '$status'" ;;
esac

# A permanent error comes back at once and is not retried: one attempt in the history.
missing_id="$(obelisk generate execution-id)"
submit poll-run '["01936f0e-7a3c-7c2e-9d41-000000000000"]' "$tmp/missing.json" "$missing_id" ||
    fail "poll-run submission failed: $(cat "$tmp/missing.json")"
grep -q '"permanent_not_found"' "$tmp/missing.json" ||
    fail "an unknown run should be permanent-not-found: $(cat "$tmp/missing.json")"
[[ "$(attempts "$missing_id")" == 1 ]] ||
    fail "a permanent error was attempted $(attempts "$missing_id") times, not once"
echo "poll-run of an unknown run: permanent-not-found, attempted once"

# A retryable error is retried by Obelisk: with the emulator gone, poll-run fails with
# transport-failed, and a second attempt follows after the deployment's 2-second backoff.
kill "${pids[0]}" 2>/dev/null || true
wait "${pids[0]}" 2>/dev/null || true
unset 'pids[0]'  # reaped: its pid may be reused, so cleanup must not signal it
retry_id="$(obelisk generate execution-id)"
obelisk execution submit -a "$api" -e "$retry_id" "$ffqn_prefix.poll-run" "[\"$run_id\"]" \
    >/dev/null || fail "poll-run submission failed"
retried=""
for _ in $(seq 1 60); do
    if (($(attempts "$retry_id") >= 2)); then
        retried=yes
        break
    fi
    sleep 0.5
done
obelisk execution events -a "$api" --json --limit 100 "$retry_id" >"$tmp/retry-events.json"
[[ -n "$retried" ]] || fail "a transport failure was not retried: $(cat "$tmp/retry-events.json")"
# The error's value (not its type, which names every case) must be transport-failed.
grep -q 'value\\":{\\"transport_failed' "$tmp/retry-events.json" ||
    fail "the retried attempt did not fail with transport-failed: $(cat "$tmp/retry-events.json")"
echo "poll-run with Runflow unreachable: transport-failed, retried by Obelisk"

echo "PASS: obelisk created run $run_id (queued), polled it ($status), returned a permanent" \
    "error once and retried a transient one"
