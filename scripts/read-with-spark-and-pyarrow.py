#!/usr/bin/env python3
"""Reads gladly-wfm's Hive-partitioned datasets where they lie, as an analyst's engine would.

    python3 scripts/read-with-spark-and-pyarrow.py --s3 s3://lake/orgs/acme [--local output]

- pyarrow, through its S3 filesystem, straight from the bucket: credentials, region and endpoint
  from the same AWS environment variables the pipeline reads (AWS_ENDPOINT_URL for an
  S3-compatible server such as the tests' loopback moto).
- PySpark in local mode (if installed): Spark reaches S3 through hadoop-aws (`s3a://`), whose jars
  are not bundled with pyspark; with `--spark-s3a` it reads the bucket itself (the jars must be on
  the classpath), otherwise it reads a local root of the same pipeline (`--local`, e.g. one
  downloaded from the bucket or written by a local run).

For each dataset it prints the partitions, rows and schema each reader sees, and checks that the
two readers agree on the row counts per partition.
"""

import argparse
import os
import sys
from urllib.parse import urlparse

DATASETS = [
    "agents",
    "inboxes",
    "agent_status_events",
    "agent_status_segments",
    "conversations",
    "work_sessions",
    "workstream_intervals",
]


def pyarrow_counts(root_url):
    import pyarrow.dataset as ds
    from pyarrow import fs

    u = urlparse(root_url)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    kw = {"region": os.environ.get("AWS_REGION", "us-east-1")}
    if endpoint:
        e = urlparse(endpoint)
        kw.update(endpoint_override=e.netloc, scheme=e.scheme)
    s3 = fs.S3FileSystem(**kw)
    base = u.netloc + u.path.rstrip("/")
    out = {}
    for name in DATASETS:
        d = ds.dataset(f"{base}/{name}", filesystem=s3, format="parquet", partitioning="hive")
        t = d.to_table()
        per_day = {}
        for day in t.column("date").to_pylist():
            per_day[str(day)] = per_day.get(str(day), 0) + 1
        out[name] = per_day
        print(f"pyarrow  {name:22} {t.num_rows:6} rows  {len(per_day)} partitions  "
              f"{', '.join(f'{f.name}:{f.type}' for f in t.schema)[:150]}")
    return out


def spark_counts(path, s3a):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        print("spark    pyspark is not installed (python3 -m pip install pyspark): skipped")
        return None
    b = (SparkSession.builder.master("local[2]").appName("gladly-wfm-read")
         .config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC"))
    if s3a:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        b = (b.config("spark.hadoop.fs.s3a.endpoint", endpoint)
             .config("spark.hadoop.fs.s3a.path.style.access", "true")
             .config("spark.hadoop.fs.s3a.connection.ssl.enabled", str(endpoint.startswith("https")).lower()))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    for name in DATASETS:
        df = spark.read.parquet(f"{path.rstrip('/')}/{name}")
        rows = df.groupBy("date").count().collect()
        per_day = {str(r["date"]): r["count"] for r in rows}
        out[name] = per_day
        print(f"spark    {name:22} {sum(per_day.values()):6} rows  {len(per_day)} partitions  "
              f"{df.schema.simpleString()[:150]}")
    spark.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s3", required=True, help="the pipeline's s3:// root")
    ap.add_argument("--local", help="a local root of the same pipeline, for Spark without hadoop-aws")
    ap.add_argument("--spark-s3a", action="store_true", help="Spark reads s3a:// itself (hadoop-aws on the classpath)")
    a = ap.parse_args()
    arrow = pyarrow_counts(a.s3)
    spark_path = a.s3.replace("s3://", "s3a://", 1) if a.spark_s3a else a.local
    if not spark_path:
        print("spark    no --local root and no --spark-s3a: skipped")
        return 0
    print(f"spark reads {spark_path}")
    spark = spark_counts(spark_path, a.spark_s3a)
    if spark is None:
        return 0
    bad = [n for n in DATASETS if arrow[n] != spark[n]]
    if bad:
        print(f"MISMATCH between pyarrow and Spark: {bad}")
        return 1
    print(f"pyarrow (from S3) and Spark agree on every partition of {len(DATASETS)} datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
