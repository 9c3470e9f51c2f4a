#!/bin/sh
# Peak RSS of an extract whose Gladly sends a 1 GB report: answers are spooled to disk as they
# arrive and refused past `gladly.max_answer_mib`, so memory stays flat whatever the server
# sends (target: under 300 MB). Needs GNU time (/usr/bin/time -v).
#
#   benches/extract_rss.sh [BINARY] [PADDING_MIB] [MAX_ANSWER_MIB]
#   benches/extract_rss.sh target/debug/gladly-wfm 1024 256
#
# The run is expected to fail (exit 1, the answer is over the cap); the figure is its peak RSS.
set -eu
BIN=${1:-target/debug/gladly-wfm}
PAD=${2:-1024}
CAP=${3:-256}
NOW=2026-11-04T17:00:00Z
dir=$(mktemp -d)
"$BIN" simulate gladly --addr 127.0.0.1:0 --now "$NOW" --agents 20 --token sim-token \
    --reports-per-minute 600 --pad-reports-mib "$PAD" >"$dir/sim.out" 2>/dev/null &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; rm -rf "$dir"' EXIT
while ! grep -q listening "$dir/sim.out" 2>/dev/null; do sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/sim.out")
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
TOML
code=0
GLADLY_API_TOKEN=sim-token /usr/bin/time -v "$BIN" run --pipeline "$dir/p.toml" --now "$NOW" \
    --from 2026-11-02 --to 2026-11-02 --stages extract >"$dir/run.out" 2>"$dir/run.err" || code=$?
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/run.err")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/run.err")
echo "extract of a report padded with $PAD MiB, cap $CAP MiB: exit $code, peak RSS $((rss_kb / 1024)) MiB, wall $wall"
grep -m1 -o 'the answer grew past the cap[^;]*' "$dir/run.out" "$dir/run.err" || true
