#!/bin/sh
# Renders a gladly-wfm report page to a PNG with headless Chromium, to check that it draws
# without errors and to look at it. Nothing is fetched: the page is self-contained, and name
# resolution is switched off so a stray external reference would show as missing, not load.
#
#   scripts/render-report.sh REPORT.html OUT.png     (WIDTH=1500 HEIGHT=2400 to change the size)
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 REPORT.html OUT.png" >&2
    exit 2
fi
in=$1
out=$2
[ -f "$in" ] || { echo "$0: $in: no such file" >&2; exit 2; }
browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[ -n "$browser" ] || { echo "$0: no chromium on PATH (Debian: apt-get install chromium)" >&2; exit 3; }
abs=$(cd "$(dirname "$in")" && pwd)/$(basename "$in")
case "$out" in /*) png=$out ;; *) png=$(pwd)/$out ;; esac
rm -f "$png"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: containers and CI often run as root, where Chromium's sandbox refuses to start.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --disable-background-networking --disable-extensions --user-data-dir="$profile" \
    --host-resolver-rules="MAP * ~NOTFOUND" \
    --window-size="${WIDTH:-1500},${HEIGHT:-2400}" --screenshot="$png" "file://$abs" 2>"$profile/stderr" || {
    cat "$profile/stderr" >&2
    exit 1
}
if [ ! -s "$png" ]; then
    cat "$profile/stderr" >&2
    echo "$0: chromium wrote no screenshot" >&2
    exit 1
fi
echo "$png"
