#!/usr/bin/env bash
# Do two builds of gladly-wfm produce the same output? Runs each binary on the same simulated
# organisation (its own simulators, seed 7, 30 agents) over six days with a WFM push, then
# compares every Parquet file byte for byte (the agents and inboxes snapshots carry the time of
# the run and are left out) and the WFM receiver's store. Used to show a restructuring changed
# nothing: scripts/same-output.sh OLD_BINARY NEW_BINARY [WORK_DIR]
#
# With SPAN=follow each binary instead runs `follow` from 22:00 on 2026-11-03 (New York) on a
# clock 1200× real time until it has reconciled 11-03, and the day's curated Parquet and the
# WFM's records of the day are compared (what a follower leaves once its reconcile ran).
set -euo pipefail
SPAN=${SPAN:-run}
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [WORK_DIR]"; exit 2; }
WORK=${3:-$(mktemp -d)}
one() {
BIN=$1; OUT=$2; NOW=2026-11-04T17:00:00Z; SPEED=()
[ "$SPAN" = follow ] && { NOW=2026-11-04T03:00:00Z; SPEED=(--speed 1200); }
rm -rf "$OUT"; mkdir -p "$OUT"
"$BIN" simulate gladly --sim-now $NOW "${SPEED[@]}" --seed 7 --agents 30 --days 8 --reports-per-minute 600 --rps 50 > "$OUT/g.addr" 2>"$OUT/g.log" &
G=$!
"$BIN" simulate wfm --dump "$OUT/wfm.json" --requests-per-30s 100000 > "$OUT/w.addr" 2>"$OUT/w.log" &
W=$!
for i in $(seq 50); do [ -s "$OUT/g.addr" ] && [ -s "$OUT/w.addr" ] && break; sleep 0.2; done
GA=$(head -1 "$OUT/g.addr" | grep -o 'http://[^ ]*'); WA=$(head -1 "$OUT/w.addr" | grep -o 'http://[^ ]*')
cat > "$OUT/pipeline.toml" <<T
name = "bc"
timezone = "America/New_York"
settle_days = 0
report_lag_minutes = $([ "$SPAN" = follow ] && echo 60 || echo 120)
[gladly]
base_url = "$GA"
user = "sim@example.com"
token = "sim-token"
requests_per_second = 50
reports_per_minute = 600
reports_in_flight = 2
[[tasks]]
name = "Logged In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Away"
pattern = "Break|Lunch|Meeting|Other|WENT_AWAY"
[[tasks]]
name = "Availability"
pattern = "AvailableFor:.*|Unavailable"
[[workstreams]]
name = "Customer_Support"
pattern = "Customer_Support|VIP Care"
[[workstreams]]
name = "Support, catch-all"
pattern = ".*Support.*"
[output]
root = "$OUT/root"
[wfm]
base_url = "$WA"
client_id = "sim-client"
client_secret = "sim-secret"
integration_id = "it"
[follow]
poll_seconds = 15
T
if [ "$SPAN" = follow ]; then
  "$BIN" follow --pipeline "$OUT/pipeline.toml" --now $NOW --speed 1200 >/dev/null 2>"$OUT/follow.log" &
  F=$!
  for i in $(seq 600); do
    grep -q '"reconciled_through": *"2026-11-03"' "$OUT/root/_state/bc/follow.json" 2>/dev/null && break
    sleep 0.2
  done
  kill -TERM $F; wait $F || true
else
  "$BIN" run --pipeline "$OUT/pipeline.toml" --now $NOW --from 2026-10-29 --to 2026-11-03 -q
fi
kill $G $W; wait $G $W 2>/dev/null || true
}
one "$1" "$WORK/a"
one "$2" "$WORK/b"
A="$WORK/a"; B="$WORK/b"; rc=0
# A follow span's raw zone holds what its polls happened to land (focus events of the windows
# it read): the curated day is what the reconcile makes of it.
PICK=.; SKIP='^$'; [ "$SPAN" = follow ] && { PICK='date=2026-11-03/'; SKIP='^./raw/'; }
for f in $(cd "$A/root" && find . -name '*.parquet' | grep -v '^./inboxes\|^./raw/inboxes\|^./agents\|^./raw/agents\|^./raw/teams' | grep -v "$SKIP" | grep "$PICK" | sort); do
  cmp -s "$A/root/$f" "$B/root/$f" || { echo "differs: $f"; rc=1; }
done
n=$(cd "$A/root" && find . -name '*.parquet' | grep -v '^./inboxes\|^./raw/inboxes\|^./agents\|^./raw/agents\|^./raw/teams' | grep -v "$SKIP" | grep -c "$PICK")
python3 - "$A/wfm.json" "$B/wfm.json" "$SPAN" <<'PY' || rc=1
import json,sys
a,b=(json.load(open(p)) for p in sys.argv[1:3])
def strip(x):
    # receipt times and ids the receiver assigns per request are not the client's output
    if isinstance(x,dict): return {k:strip(v) for k,v in x.items() if k not in ("receivedAt","requestId","at","id_seq")}
    if isinstance(x,list): return [strip(v) for v in x]
    return x
if sys.argv[3]=="follow":
    # The records of 11-03 (New York): what the follower's reconcile left for the day.
    lo,hi="2026-11-03T05:00:00","2026-11-04T05:00:00"
    def of_day(store):
        out={}
        for kind,recs in store["records"].items():
            out[kind]={k:v for k,v in recs.items()
                       if lo<=str(v[1].get("startTime") or v[1].get("dayStart") or v[1].get("intervalStart") or "")<hi}
        return out
    a,b=of_day(a),of_day(b)
sa,sb=strip(a),strip(b)
print("wfm store equal" if sa==sb else "wfm store DIFFERS"); sys.exit(0 if sa==sb else 1)
PY
echo "$n parquet files compared; rc=$rc"; exit $rc
