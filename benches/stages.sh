#!/usr/bin/env bash
# One stage (or several) of a backfill alone, as a whole process: wall, CPU and peak RSS from GNU
# time. What the closing notes of issue 17 quote for "extraction alone", "transform alone" and
# "load alone"; single runs, so compare medians of several.
#
#   benches/stages.sh DAYS STAGES [DIR]
#   benches/stages.sh 30 extract,transform /tmp/st30   # a fresh Gladly simulator, 2,000 agents
#   benches/stages.sh 30 transform /tmp/st30           # again over the raw zone landed above
#   benches/stages.sh 30 load /tmp/st30                # a push to a fresh WFM simulator
#
# STAGES with `extract` starts a Gladly simulator (seed 42, AGENTS agents, limits raised 30×)
# and a fresh output root in DIR; the others reuse DIR's. `load` starts a WFM simulator with
# its limit raised and prints its CPU time and RSS beside the client's. BIN (default: the
# release binary `cargo bench` builds), AGENTS (2000) and AUDIT (`[audit] enabled`: true) come
# from the environment.
set -euo pipefail
DAYS=$1 STAGES=$2 DIR=${3:-/tmp/gladly-wfm-stages-$1}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/gladly-wfm}
AGENTS=${AGENTS:-2000}
NOW=2026-11-04T17:00:00Z
TO=2026-11-03
FROM=$(date -d "$TO - $((DAYS - 1)) days" +%F)
mkdir -p "$DIR"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start() { # OUTFILE ARGS...: a simulator in the background; sets `url` and `pid`
    local out=$1; shift
    # Removed first: a reused DIR's file from the last run would name the old address.
    rm -f "$out"
    "$BIN" simulate "$@" >"$out" 2>/dev/null &
    pid=$!
    pids+=("$pid")
    while ! grep -q listening "$out" 2>/dev/null; do sleep 0.1; done
    url=$(sed -n 's/^listening on //p' "$out" | head -1)
}
if [[ $STAGES == *extract* ]]; then
    rm -rf "$DIR/output"
    start "$DIR/gladly.out" gladly --addr=127.0.0.1:0 --seed=42 --now=$NOW \
        --agents="$AGENTS" --days=$((DAYS + 2)) --timezone=America/New_York --token=bench-token \
        --rps=300 --reports-per-minute=300 --reports-in-flight=2
    gladly=$url
    # The simulator computes every agent's summary from its ground truth at the first
    # AgentSummaryV2 request (Gladly serves it precomputed): done here, outside the timing.
    curl -s -o /dev/null -u sim@example.com:bench-token -H 'content-type: application/json' \
        -d '{"metricSet":"AgentSummaryV2","timezone":"America/New_York","startAt":"'"$TO"'","endAt":"'"$TO"'","filters":{},"aggregationLevel":"daily"}' \
        "$gladly/api/v1/reports"
else
    gladly=http://127.0.0.1:9 # not asked
fi
cat >"$DIR/p.toml" <<TOML
name = "bench"
timezone = "America/New_York"
settle_days = 0
[gladly]
base_url = "$gladly"
user = "sim@example.com"
token = "\${GLADLY_API_TOKEN}"
requests_per_second = 300
reports_per_minute = 300
reports_in_flight = 2
[[tasks]]
name = "Agent Status – Logged In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Agent Status – Went Away"
pattern = "Break|Lunch|Meeting|Other|WENT_AWAY"
[[workstreams]]
name = "Customer_Support"
pattern = "Customer_Support|VIP Care"
[output]
root = "$DIR/output"
[audit]
enabled = ${AUDIT:-true}
TOML
if [[ $STAGES == *load* ]]; then
    start "$DIR/wfm.out" wfm --addr=127.0.0.1:0 --requests-per-30s=1000000
    wfm=$url wfm_pid=$pid
    cat >>"$DIR/p.toml" <<TOML
[wfm]
enabled = true
base_url = "$wfm"
client_id = "sim-client"
client_secret = "sim-secret"
integration_id = "bench"
requests_per_30s = 1000000
TOML
fi
GLADLY_API_TOKEN=bench-token /usr/bin/time -f "$STAGES, $DAYS days: wall %e s, user %U s, system %S s, peak RSS %M KiB" \
    "$BIN" run --pipeline "$DIR/p.toml" --now $NOW --stages "$STAGES" --from "$FROM" --to "$TO" -q
if [[ $STAGES == *load* ]]; then
    ps -o cputime=,rss= -p "$wfm_pid" | awk '{print "WFM simulator: CPU " $1 ", RSS " $2 " KiB"}'
fi
