"""The same job as `gladly-wfm run --stages transform` for agent events, written the way an
analyst would in DuckDB SQL: labels, anchored first-match regex mapping, segments with window
functions cut at midnight in the business timezone, and partitioned zstd Parquet.
Used by benches/pipeline.rs for comparison: python3 duckdb_transform.py RAW_ROOT OUT TZ."""
import sys
import time

import duckdb

raw, out, tz = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.time()
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"SET TimeZone = '{tz}'")
con.execute("""
CREATE TEMP TABLE rules AS SELECT * FROM (VALUES
  (1, 'Agent Status – Logged In', 'LOGGED_IN'),
  (2, 'Agent Status – Logged Out', 'LOGGED_OUT'),
  (3, 'Agent Status – Went Away', 'Break|Lunch|Meeting|Other|WENT_AWAY'),
  (4, 'Agent Status – Returned from Away', 'RETURNED_FROM_AWAY'),
  (5, 'Agent Status – Availability Updated', 'AvailableFor:.*|Unavailable'),
  (6, 'Agent Status – Active Reason', 'ActiveReason:.*')
) t(ord, name, pattern)""")
con.execute(f"""
CREATE TEMP TABLE ev AS
SELECT e.*, CASE e.event_type
    WHEN 'AGENT_STATUS/LOGGED_IN' THEN 'LOGGED_IN'
    WHEN 'AGENT_STATUS/LOGGED_OUT' THEN 'LOGGED_OUT'
    WHEN 'AGENT_STATUS/WENT_AWAY' THEN coalesce(e.away_reason, 'WENT_AWAY')
    WHEN 'AGENT_STATUS/RETURNED_FROM_AWAY' THEN 'RETURNED_FROM_AWAY'
    WHEN 'AGENT_STATUS/CHANGED_ACTIVE_REASON' THEN 'ActiveReason:' || coalesce(e.active_reason, '')
    WHEN 'AGENT_AVAILABILITY/UPDATED' THEN CASE WHEN coalesce(len(e.available_for), 0) = 0 THEN 'Unavailable'
         ELSE 'AvailableFor:' || array_to_string(list_sort(e.available_for), ',') END
    WHEN 'AGENT_AVAILABILITY/FOCUS_ENTERED' THEN 'FOCUS_ENTERED'
    WHEN 'AGENT_AVAILABILITY/FOCUS_EXITED' THEN 'FOCUS_EXITED'
    ELSE e.event_type END AS label,
  lower(trim(a.email)) AS agent_email
FROM read_parquet('{raw}/raw/agent_events/*/*.parquet', hive_partitioning = true) e
LEFT JOIN (SELECT * FROM read_parquet('{raw}/raw/agents/*/*.parquet', hive_partitioning = true)
           QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY date DESC) = 1) a USING (agent_id)""")
con.execute("""
CREATE TEMP TABLE ev2 AS
SELECT ev.*, (SELECT name FROM rules WHERE regexp_full_match(ev.label, rules.pattern) ORDER BY ord LIMIT 1) AS task
FROM ev""")
con.execute(f"""
COPY (SELECT event_id, event_type, agent_id, agent_email, occurred_at, recorded_at, away_reason, active_reason,
             available_for, label, task, source, date FROM ev2 ORDER BY event_id)
TO '{out}/agent_status_events' (FORMAT PARQUET, PARTITION_BY (date), COMPRESSION ZSTD, OVERWRITE_OR_IGNORE)""")
con.execute("""
CREATE TEMP TABLE seg AS
SELECT agent_id, agent_email, axis, event_id AS opened_by, label, task, state, date,
       greatest(occurred_at, date::TIMESTAMPTZ) AS start_at,
       lead(greatest(occurred_at, date::TIMESTAMPTZ)) OVER w AS next_at
FROM (SELECT *, CASE WHEN event_type LIKE 'AGENT_STATUS/%' THEN 'status' ELSE 'availability' END AS axis,
             CASE event_type WHEN 'AGENT_STATUS/LOGGED_OUT' THEN 'logged_out' WHEN 'AGENT_STATUS/WENT_AWAY' THEN 'away'
                  WHEN 'AGENT_AVAILABILITY/UPDATED' THEN CASE WHEN coalesce(len(available_for), 0) = 0 THEN 'unavailable' ELSE 'available' END
                  ELSE 'active' END AS state
      FROM ev2 WHERE event_type NOT LIKE 'AGENT_AVAILABILITY/FOCUS_%')
WINDOW w AS (PARTITION BY agent_id, axis ORDER BY occurred_at, recorded_at, event_id)""")
# Cut every segment at each local midnight it spans: one piece per day.
con.execute(f"""
COPY (
  SELECT agent_id, agent_email, axis, state, label, task,
         greatest(start_at, d::TIMESTAMPTZ) AS start_at,
         least(coalesce(next_at, (d + INTERVAL 1 DAY)::TIMESTAMPTZ), (d + INTERVAL 1 DAY)::TIMESTAMPTZ) AS end_at,
         epoch(least(coalesce(next_at, (d + INTERVAL 1 DAY)::TIMESTAMPTZ), (d + INTERVAL 1 DAY)::TIMESTAMPTZ)
               - greatest(start_at, d::TIMESTAMPTZ)) AS duration_seconds,
         opened_by, strftime(d, '%Y-%m-%d') AS date
  FROM seg, LATERAL (SELECT unnest(generate_series(start_at::DATE, coalesce(next_at - INTERVAL 1 MILLISECOND, start_at)::DATE, INTERVAL 1 DAY))::DATE AS d)
  ORDER BY agent_id, axis, start_at)
TO '{out}/agent_status_segments' (FORMAT PARQUET, PARTITION_BY (date), COMPRESSION ZSTD, OVERWRITE_OR_IGNORE)""")
n = con.execute("SELECT count(*) FROM ev").fetchone()[0]
print(f"{n} {time.time() - t0:.3f}")
