#!/bin/sh
# Peak RSS when Gladly's answers grow: every answer is padded with copies of its last row (a
# report for `run`, an Events API window for `follow`), so memory must not follow the answer's
# size: answers are spooled to disk as they arrive, decoded as a stream, and rows repeated in an
# answer are kept once. Past `gladly.max_answer_mib` an answer is refused (the last line: a
# 1 GiB report, exit 1). Needs GNU time (/usr/bin/time -v).
#
#   benches/extract_rss.sh [BINARY] [SIZES_MIB] [MAX_ANSWER_MIB]
#   benches/extract_rss.sh target/release/gladly-wfm "10 100 250" 256
set -eu
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/gladly-wfm}
SIZES=${2:-10 100 250}
CAP=${3:-256}
NOW=2026-11-04T17:00:00Z
dir=$(mktemp -d)
sim=
trap 'kill $sim 2>/dev/null || true; rm -rf "$dir"' EXIT

# Starts the Gladly simulator with the given padding flag; sets $url.
start_sim() {
    kill $sim 2>/dev/null || true
    rm -f "$dir/sim.out"
    "$BIN" simulate gladly --addr 127.0.0.1:0 --now "$NOW" --agents 20 --token sim-token \
        --reports-per-minute 600 "$@" >"$dir/sim.out" 2>/dev/null &
    sim=$!
    while ! grep -q listening "$dir/sim.out" 2>/dev/null; do sleep 0.1; done
    url=$(sed -n 's/^listening on //p' "$dir/sim.out")
}

pipeline() {
    rm -rf "$dir/output"
    cat >"$dir/p.toml" <<TOML
name = "rss"
timezone = "America/New_York"
[gladly]
base_url = "$url"
user = "sim@example.com"
token = "\${GLADLY_API_TOKEN}"
reports_per_minute = 600
max_answer_mib = $CAP
[[tasks]]
name = "Logged In"
pattern = "LOGGED_IN"
[output]
root = "$dir/output"
[follow]
poll_seconds = 15
TOML
}

rss() { echo $(($(sed -n 's/.*Maximum resident set size (kbytes): //p' "$1") / 1024)); }

# `run` of one day read from the reports.
run_day() {
    start_sim --pad-reports-mib "$1"
    pipeline
    code=0
    GLADLY_API_TOKEN=sim-token /usr/bin/time -v "$BIN" run --pipeline "$dir/p.toml" --now "$NOW" \
        --from 2026-11-02 --to 2026-11-02 --stages extract,transform >"$dir/run.out" 2>"$dir/run.err" || code=$?
    echo "run    report padded with $1 MiB (cap $CAP MiB): exit $code, peak RSS $(rss "$dir/run.err") MiB"
}

# `follow` until its first poll (today from the Events API) has landed, then SIGTERM.
follow_poll() {
    start_sim --pad-events-mib "$1"
    pipeline
    rm -f "$dir/follow.err"
    GLADLY_API_TOKEN=sim-token /usr/bin/time -v "$BIN" follow --pipeline "$dir/p.toml" --now "$NOW" \
        >"$dir/follow.out" 2>"$dir/follow.err" &
    timer=$!
    # Until the first poll ends (the file is new: no line of an earlier run can match).
    while ! grep -q -e 'follow: polled' -e 'trying again' -e 'ERROR' "$dir/follow.err" 2>/dev/null; do
        kill -0 $timer 2>/dev/null || break
        sleep 0.2
    done
    kill -TERM "$(pgrep -P $timer)" 2>/dev/null || true
    code=0
    wait $timer || code=$?
    polled=$(grep -c 'follow: polled' "$dir/follow.err" || true)
    echo "follow events padded with $1 MiB (cap $CAP MiB): exit $code, polls $polled, peak RSS $(rss "$dir/follow.err") MiB"
}

for s in $SIZES; do run_day "$s"; done
for s in $SIZES; do follow_poll "$s"; done
run_day 1024
grep -m1 -o 'the answer grew past the cap[^;]*' "$dir/run.out" "$dir/run.err" || true
