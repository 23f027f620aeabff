-- The read side (txnwatch.records): every query of X's and Y's records that the report, the live view, the
-- Airflow tasks, the demo and the benchmarks run, one per `-- name:` block. Read-only.
-- {schema} is filled in with psycopg.sql.Identifier (never as text); %(...)s are bound parameters.
-- Every query is bounded (LIMIT, aggregates or primary-key lookups) so one poll stays short.
-- Lag percentiles are percentile_cont: linear interpolation, the project's one definition (core/stats.py).

-- name: has_tables
SELECT to_regclass(format('%%I.y_checkpoint', %(schema)s::text)) IS NOT NULL
   AND to_regclass(format('%%I.x_checkpoint', %(schema)s::text)) IS NOT NULL;

-- name: y_position
SELECT last_chunk, finished, landing, output, y_start_time, ready_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM {schema}.y_checkpoint WHERE id = 1;

-- name: x_position
-- The landing zone Y reads, else the one X wrote to last.
SELECT landing, last_chunk, rows_landed, rejected, finished, updated_at
FROM {schema}.x_checkpoint
ORDER BY coalesce(landing = %(y_landing)s, false) DESC, updated_at DESC
LIMIT 1;

-- name: totals
SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(quarantined), 0), coalesce(max(batch_size), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM committed_at - landed_at)::float8),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM committed_at - landed_at)::float8),
       max(extract(epoch FROM committed_at - landed_at))::float8,
       count(landed_at),
       count(*) FILTER (WHERE committed_at - landed_at <= interval '1 second')
FROM {schema}.y_chunk_metrics;

-- name: detections_per_pattern
SELECT pattern_id, count(*) FROM {schema}.detected_patterns GROUP BY pattern_id;

-- name: files
SELECT count(*), coalesce(max(last_seq), 0), max(written_at) FROM {schema}.y_output_files;

-- name: quarantined_chunks
-- Whole chunks set aside (unreadable objects) carry no raw row.
SELECT count(DISTINCT chunk) FROM {schema}.y_quarantine WHERE raw IS NULL;

-- name: chunk_series
-- Per chunk: lag and the cumulative detections per pattern, for chunks after %(after)s (the live view asks
-- only for what it has not drawn yet; a NULL limit means all of them).
SELECT chunk, rows, quarantined, batch_size, lag_s, cum1, cum2, cum3
FROM (SELECT chunk, rows, quarantined, batch_size,
             extract(epoch FROM committed_at - landed_at)::float8 AS lag_s,
             sum(pat1) OVER w AS cum1, sum(pat2) OVER w AS cum2, sum(pat3) OVER w AS cum3
      FROM {schema}.y_chunk_metrics
      WINDOW w AS (ORDER BY chunk)) t
WHERE chunk > %(after)s
ORDER BY chunk
LIMIT %(limit)s;

-- name: newest_detections
SELECT d.seq, d.pattern_id, d.action_type, d.customer_name, d.customer_id, d.merchant_id, d.chunk,
       d.detection_time, f.file_no
FROM (SELECT * FROM {schema}.detected_patterns ORDER BY seq DESC LIMIT %(limit)s) d
LEFT JOIN {schema}.y_output_files f ON d.seq BETWEEN f.first_seq AND f.last_seq
ORDER BY d.seq DESC;

-- name: newest_quarantine
SELECT chunk, source_line, reason, recorded_at
FROM {schema}.y_quarantine ORDER BY recorded_at DESC, chunk DESC LIMIT %(limit)s;

-- name: schemas
-- Schemas that hold txnwatch's checkpoint tables, for the view's schema picker.
SELECT table_schema FROM information_schema.tables
WHERE table_name IN ('x_checkpoint', 'y_checkpoint') AND table_type = 'BASE TABLE'
GROUP BY table_schema HAVING count(*) = 2
ORDER BY table_schema;

-- name: last_activity
-- When X or Y of one schema last recorded progress (the picker offers the most recent first).
SELECT greatest((SELECT max(updated_at) FROM {schema}.y_checkpoint),
                (SELECT max(updated_at) FROM {schema}.x_checkpoint));

-- name: y_readiness
-- Y's readiness mark and liveness, with the database's clock to compare them with.
SELECT y_start_time, ready_at, heartbeat_at, now() FROM {schema}.y_checkpoint WHERE id = 1;

-- name: has_metrics
SELECT to_regclass(format('%%I.y_chunk_metrics', %(schema)s::text)) IS NOT NULL;

-- name: has_y_checkpoint
SELECT to_regclass(format('%%I.y_checkpoint', %(schema)s::text)) IS NOT NULL;

-- name: detections_total
SELECT count(*) FROM {schema}.detected_patterns;

-- name: chunk_costs
-- Per chunk, in chunk order: the seconds of the batch that processed it (read -> commit).
SELECT chunk, batch_seconds FROM {schema}.y_chunk_metrics ORDER BY chunk;

-- name: detection_commits
-- Every detection, in detection order, with the commit time of its chunk.
SELECT d.pattern_id, m.committed_at FROM {schema}.detected_patterns d
JOIN {schema}.y_chunk_metrics m USING (chunk) ORDER BY d.seq;

-- name: commit_span
SELECT min(committed_at), max(committed_at) FROM {schema}.y_chunk_metrics;
