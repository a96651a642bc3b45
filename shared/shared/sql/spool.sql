-- The recorder's named queries (loaded by shared/spool.py with shared/sqlfile.py): what every worker, and the
-- harness for a dead worker's spool, runs to load a spool file into job_events exactly once. Each can be
-- pasted into psql as it is; parameters are %(name)s. The tables are the app lineage's job_events and
-- spool_progress (the byte offset loaded so far, per spool file).

-- spool_progress_start --
-- A spool file's progress row, made on its first load (several loaders may race: the first one wins).
INSERT INTO spool_progress (path, worker_id, loaded_bytes) VALUES (%(path)s, %(worker_id)s, 0)
ON CONFLICT (path) DO NOTHING;

-- spool_progress_lock --
-- The offset loaded so far, locked until the load's transaction ends: one loader per file at a time.
SELECT loaded_bytes FROM spool_progress WHERE path = %(path)s FOR UPDATE;

-- spool_progress_seen --
-- Nothing new in the file: only when it was last looked at.
UPDATE spool_progress SET loaded_at = now() WHERE path = %(path)s;

-- spool_copy --
-- The file's new complete lines, as they are: a spool line is a row in COPY's text format, its fields in
-- this order (shared.spool.COLUMNS).
COPY job_events (kind, run_id, seq, attempt, worker_id, adapter, ts_us, enqueued_us, scheduled_us, error) FROM STDIN;

-- spool_progress_advance --
-- The new offset, committed with the rows it covers.
UPDATE spool_progress SET loaded_bytes = %(loaded_bytes)s, loaded_at = now() WHERE path = %(path)s;
