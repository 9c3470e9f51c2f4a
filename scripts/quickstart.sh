#!/usr/bin/env bash
# Runs every command block of the README's quick start (between `<!-- quickstart:begin -->` and
# `<!-- quickstart:end -->`), in order, as a newcomer would paste them, and fails on the first
# that exits non-zero. `cargo test` lines are left out (the suite runs on its own). It needs a
# fresh root: run it from a fresh clone (CI does), where `output/` holds only `.gitkeep`.
set -euo pipefail
cd "$(dirname "$0")/.."
for root in output output-nightly; do
    if [ -d "$root" ] && [ -n "$(ls -A "$root" | grep -v '^.gitkeep$' || true)" ]; then
        echo "quickstart: $root/ is not empty: run this from a fresh clone" >&2
        exit 1
    fi
done
blocks=$(mktemp -d)
trap 'rm -rf "$blocks"' EXIT
python3 - "$blocks" <<'PY'
import re, sys
text = open("README.md", encoding="utf-8").read()
m = re.search(r"<!-- quickstart:begin -->(.*?)<!-- quickstart:end -->", text, re.S)
if not m:
    sys.exit("quickstart: README.md has no quickstart markers")
blocks = re.findall(r"```sh\n(.*?)```", m.group(1), re.S)
if not blocks:
    sys.exit("quickstart: no ```sh block between the markers")
for i, b in enumerate(blocks):
    kept = [l for l in b.splitlines() if not re.match(r"\s*cargo test\b", l)]
    open(f"{sys.argv[1]}/{i:02}.sh", "w").write("\n".join(kept) + "\n")
PY
for b in "$blocks"/*.sh; do
    echo "quickstart: block $(basename "$b" .sh):"
    sed 's/^/    /' "$b"
    if ! bash -euo pipefail "$b" >"$b.out" 2>&1; then
        code=$?
        tail -n 30 "$b.out"
        echo "quickstart: block $(basename "$b" .sh) exited $code" >&2
        exit 1
    fi
    echo "quickstart: exit 0"
done
test -s output/report.html || { echo "quickstart: no output/report.html" >&2; exit 1; }
echo "quickstart: every command block of the README's quick start ran and exited 0"
