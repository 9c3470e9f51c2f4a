"""Runs the README's recipes, or reads every dataset, in the current folder (which holds the
demo's `output/`), and prints the results as JSON for tests/recipes.rs to check.

    python3 tests/recipes.py README.md recipes    # {name: {engine: [row, ...]}}
    python3 tests/recipes.py README.md datasets   # {dataset: {engine: rows}}

A recipe is the fenced block after a `<!-- recipe: NAME ENGINE -->` line: one SQL query for
`duckdb`, or Python for `pandas` whose last line prints the result, `print(EXPR)`. A pandas
recipe also runs as pasted into a script, and must print something.
"""

import json
import re
import sys

DATASETS = [
    "agents",
    "inboxes",
    "agent_status_events",
    "agent_status_segments",
    "conversations",
    "work_sessions",
    "workstream_intervals",
    "agent_day_audit",
]


def recipes(readme):
    pattern = re.compile(r"<!-- recipe: (\w+) (\w+) -->\s*```\w*\n(.*?)```", re.S)
    return [(m.group(1), m.group(2), m.group(3)) for m in pattern.finditer(readme)]


def records(df):
    """Rows as JSON objects: dates as YYYY-MM-DD, instants as epoch milliseconds, NaN as null."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        df = df.to_frame()
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    df.columns = [str(c) for c in df.columns]
    out = {}
    for c in df.columns:
        col = df[c]
        if c == "date":
            out[c] = [str(v)[:10] for v in col]
        elif pd.api.types.is_datetime64_any_dtype(col):
            utc = pd.to_datetime(col, utc=True)
            epoch = pd.Timestamp(0, tz="UTC")
            out[c] = [int((v - epoch) // pd.Timedelta(milliseconds=1)) for v in utc]
        else:
            out[c] = [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in col]
    return [dict(zip(out, vals)) for vals in zip(*out.values())]


def run_recipe(engine, code):
    if engine == "duckdb":
        import duckdb

        return records(duckdb.sql(code).df())
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})
    if not printed.getvalue().strip():
        raise SystemExit(f"a pandas recipe printed nothing when run as pasted:\n{code}")
    lines = code.rstrip().splitlines()
    last = lines[-1].strip()
    if not (last.startswith("print(") and last.endswith(")")):
        raise SystemExit(f"a pandas recipe's last line must be print(...):\n{code}")
    ns = {}
    exec("\n".join(lines[:-1]), ns)
    return records(eval(last[len("print(") : -1], ns))


def main():
    readme = open(sys.argv[1], encoding="utf-8").read()
    mode = sys.argv[2]
    result = {}
    if mode == "recipes":
        for name, engine, code in recipes(readme):
            result.setdefault(name, {})[engine] = run_recipe(engine, code)
    else:
        import duckdb
        import pandas as pd

        for d in DATASETS:
            # pandas with its default backend, and DuckDB, each read the whole dataset.
            df = pd.read_parquet(f"output/{d}")
            n = duckdb.sql(
                f"SELECT count(*) FROM read_parquet('output/{d}/*/*.parquet', hive_partitioning = true)"
            ).fetchall()[0][0]
            result[d] = {"pandas": len(df), "duckdb": n, "pandas_columns": list(df.columns)}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
