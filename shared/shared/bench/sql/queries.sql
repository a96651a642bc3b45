-- The benchmark harness's named queries (loaded by shared/bench/store.py with shared/sqlfile.py).
-- Each query can be pasted into psql as it is; parameters are %(name)s. The tables are the app lineage's
-- experiments, benchmark_runs and job_events; the workers' heartbeats (queue.workers) are read through
-- shared/sql/heartbeat.sql (shared.heartbeat.QUERIES), as everyone reads them.

-- ---------------------------------------------------------------------------------------------------
-- Experiments
-- ---------------------------------------------------------------------------------------------------

-- experiment_insert --
-- A pending experiment; ix_experiments_one_active refuses it while another is pending or running.
INSERT INTO experiments (status, mode, spec)
VALUES ('pending', %(mode)s, %(spec)s)
RETURNING id;

-- run_insert --
-- One run (one repetition of one case), inserted in execution order with its experiment.
INSERT INTO benchmark_runs
  (experiment_id, case_key, repetition, adapter, broker, celery_config, job_count, scheduling_mode,
   workload, workload_params, scenario, processes, slots, recording)
VALUES
  (%(experiment_id)s, %(case_key)s, %(repetition)s, %(adapter)s, %(broker)s, %(celery_config)s, %(jobs)s,
   %(scheduling)s, %(workload)s, %(params)s, %(scenario)s, %(processes)s, %(slots)s, %(recording)s);

-- experiment_active --
-- The experiment that holds the one-active slot, if any.
SELECT id, status FROM experiments WHERE status IN ('pending', 'running') LIMIT 1;

-- experiment_get --
SELECT id, status, mode, spec, executor_pid, error, report_dir, created_at, started_at, finished_at,
       executor_host, executor_machine_id, heartbeat_at, cancel_requested_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
  FROM experiments
 WHERE id = %(id)s;

-- experiment_list --
-- Newest first, keyset-paginated by id (%(after)s: the last id of the previous page, or NULL).
SELECT e.id, e.status, e.mode, e.spec, e.executor_pid, e.error, e.report_dir, e.created_at, e.started_at,
       e.finished_at, e.executor_host, e.executor_machine_id, e.heartbeat_at, e.cancel_requested_at,
       (SELECT count(*) FROM benchmark_runs r WHERE r.experiment_id = e.id) AS run_count
  FROM experiments e
 WHERE (%(after)s::bigint IS NULL OR e.id < %(after)s)
 ORDER BY e.id DESC
 LIMIT %(limit)s;

-- experiment_set_executor --
-- The web launched the executor: its PID and host, before it beats for itself.
UPDATE experiments SET executor_pid = %(pid)s, executor_host = %(host)s, executor_machine_id = %(machine_id)s
 WHERE id = %(id)s;

-- experiment_beat --
-- The executor's heartbeat: it is alive, where it runs; returns whether it must stop: it was asked to, or
-- its experiment is no longer active (reaped while it could not beat: another executor may start).
UPDATE experiments
   SET heartbeat_at = now(), executor_pid = %(pid)s, executor_host = %(host)s,
       executor_machine_id = %(machine_id)s
 WHERE id = %(id)s
RETURNING cancel_requested_at IS NOT NULL OR status NOT IN ('pending', 'running');

-- experiment_executors --
-- Active experiments with their executor's host, PID and heartbeat age (since it was created, if it never
-- beat): what the reaper decides on.
SELECT id, executor_pid, executor_host,
       extract(epoch FROM now() - coalesce(heartbeat_at, created_at))::float8 AS age
  FROM experiments
 WHERE status IN ('pending', 'running');

-- experiment_request_cancel --
-- Cancel: a flag the executor polls with its heartbeat, wherever it runs.
UPDATE experiments SET cancel_requested_at = coalesce(cancel_requested_at, now())
 WHERE id = %(id)s AND status IN ('pending', 'running');

-- experiment_fail_active --
UPDATE experiments SET status = 'failed', error = %(error)s, finished_at = now()
 WHERE id = %(id)s AND status IN ('pending', 'running');

-- experiment_cancel_pending --
-- An experiment whose executor never ran: cancelled, with its pending runs.
WITH e AS (
    UPDATE experiments SET status = 'cancelled', finished_at = now() WHERE id = %(id)s RETURNING id
)
UPDATE benchmark_runs SET status = 'cancelled' WHERE experiment_id = (SELECT id FROM e) AND status = 'pending';

-- experiment_start --
UPDATE experiments
   SET status = 'running', started_at = now(), report_dir = %(report_dir)s,
       executor_pid = coalesce(executor_pid, %(pid)s)
 WHERE id = %(id)s;

-- experiment_finish --
UPDATE experiments SET status = %(status)s, error = %(error)s, finished_at = now() WHERE id = %(id)s;

-- experiment_set_error --
UPDATE experiments SET error = %(error)s WHERE id = %(id)s;

-- experiment_run_counts --
SELECT status, count(*) FROM benchmark_runs WHERE experiment_id = %(id)s GROUP BY status;

-- experiment_current_run --
SELECT id, case_key, repetition, status FROM benchmark_runs
 WHERE experiment_id = %(id)s AND status IN ('scheduling', 'running')
 ORDER BY id
 LIMIT 1;

-- experiment_last_record --
-- The wall clock of the experiment's last record (seconds), which live workers' spool loads must pass.
SELECT max(e.ts_us) / 1e6::float8
  FROM job_events e JOIN benchmark_runs r ON r.id = e.run_id
 WHERE r.experiment_id = %(id)s;

-- experiment_file_put --
-- One file of an experiment's report, kept in the database (it outlives the machine that wrote it).
INSERT INTO experiment_files (experiment_id, name, media_type, content)
VALUES (%(id)s, %(name)s, %(media_type)s, %(content)s)
ON CONFLICT (experiment_id, name) DO UPDATE
   SET media_type = EXCLUDED.media_type, content = EXCLUDED.content, created_at = now();

-- experiment_file_list --
SELECT name, media_type, octet_length(content) AS size, created_at
  FROM experiment_files
 WHERE experiment_id = %(id)s
 ORDER BY name;

-- experiment_file_get --
SELECT media_type, content FROM experiment_files WHERE experiment_id = %(id)s AND name = %(name)s;

-- ---------------------------------------------------------------------------------------------------
-- Runs
-- ---------------------------------------------------------------------------------------------------

-- run_list --
-- The one listing of runs: by experiment, case, ids or none, newest first or in id order, keyset-paginated.
SELECT id, experiment_id, case_key, repetition, adapter, broker, celery_config, scenario, workload,
       workload_params, scheduling_mode, job_count, processes, slots, recording, status, error, metrics,
       environment, created_at, scheduling_started_at, scheduling_finished_at, first_job_started_at,
       last_job_finished_at, finished_at
  FROM benchmark_runs
 WHERE (%(experiment_id)s::bigint IS NULL OR experiment_id = %(experiment_id)s)
   AND (%(case_key)s::text IS NULL OR case_key = %(case_key)s)
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
   AND (%(after)s::bigint IS NULL OR id < %(after)s)
 ORDER BY CASE WHEN %(newest_first)s THEN -id ELSE id END
 LIMIT %(limit)s;

-- run_case --
-- The experiment and case a run belongs to.
SELECT experiment_id, case_key FROM benchmark_runs WHERE id = %(id)s;

-- case_latest_experiment --
SELECT max(experiment_id) FROM benchmark_runs WHERE case_key = %(case_key)s;

-- runs_pending --
SELECT id, case_key, repetition FROM benchmark_runs
 WHERE experiment_id = %(id)s AND status = 'pending'
 ORDER BY id;

-- run_set_jobs --
-- A sized drain's run: the size its probe gave.
UPDATE benchmark_runs SET job_count = %(jobs)s WHERE id = %(id)s;

-- run_end --
-- A run that ends without figures: skipped, interrupted or failed, with why.
UPDATE benchmark_runs SET status = %(status)s, error = %(error)s, finished_at = now() WHERE id = %(id)s;

-- runs_end_unfinished --
-- At the end of an experiment (or when its executor died): what never finished is cancelled or failed.
UPDATE benchmark_runs
   SET status = CASE WHEN status = 'pending' OR %(status)s = 'cancelled' THEN 'cancelled' ELSE %(status)s END,
       error = coalesce(error, %(error)s), finished_at = coalesce(finished_at, now())
 WHERE experiment_id = %(id)s AND status IN ('pending', 'scheduling', 'running');

-- run_scheduling --
UPDATE benchmark_runs
   SET status = 'scheduling', scheduling_started_at = now(), environment = %(environment)s
 WHERE id = %(id)s;

-- run_running --
UPDATE benchmark_runs SET status = 'running', scheduling_finished_at = now() WHERE id = %(id)s;

-- run_finish --
UPDATE benchmark_runs
   SET status = %(status)s, metrics = %(metrics)s, finished_at = now(),
       first_job_started_at = to_timestamp(%(first_start)s), last_job_finished_at = to_timestamp(%(last_finish)s),
       error = %(error)s
 WHERE id = %(id)s;

-- runs_to_audit --
-- Runs whose records the final audit reads: recorded, and finished or cut short after sending.
SELECT id, metrics FROM benchmark_runs
 WHERE experiment_id = %(id)s AND recording AND status IN ('completed', 'cancelled') AND metrics ? 'enqueued';

-- run_set_audit --
UPDATE benchmark_runs SET metrics = jsonb_set(metrics, '{audit}', %(audit)s) WHERE id = %(id)s;

-- ---------------------------------------------------------------------------------------------------
-- Job records (job_events, loaded from the workers' spools)
-- ---------------------------------------------------------------------------------------------------

-- events_finished --
-- How many jobs of a run have a finish record.
SELECT count(DISTINCT seq) FROM job_events WHERE run_id = %(run_id)s AND kind = 'finish';

-- events_started_finished --
SELECT count(DISTINCT seq) FILTER (WHERE kind = 'start'), count(DISTINCT seq) FILTER (WHERE kind = 'finish')
  FROM job_events
 WHERE run_id = %(run_id)s;

-- events_started_before --
-- Jobs of a run whose first start came before a time (seconds): the drain gate's check.
SELECT count(DISTINCT seq) FROM job_events
 WHERE run_id = %(run_id)s AND kind = 'start' AND ts_us < %(ts)s * 1e6;

-- events_of_run --
-- Every record of a run, times in seconds (the audit's input).
SELECT seq, kind, ts_us / 1e6::float8, attempt, worker_id FROM job_events WHERE run_id = %(run_id)s;

-- job_times --
-- Per job: enqueue and schedule times, first start, first finish (seconds).
SELECT seq,
       min(enqueued_us) / 1e6::float8, min(scheduled_us) / 1e6::float8,
       min(ts_us) FILTER (WHERE kind = 'start') / 1e6::float8,
       min(ts_us) FILTER (WHERE kind = 'finish') / 1e6::float8
  FROM job_events
 WHERE run_id = %(run_id)s
 GROUP BY seq;

-- events_delete_run --
-- A probe's records (a sized drain's probe runs under a negative run id, which no run row has), deleted once
-- its rates sized the case.
DELETE FROM job_events WHERE run_id = %(run_id)s;

-- job_starts --
-- Every start of a run in time order per job (the completed attempt's start is the last before its finish).
SELECT seq, ts_us / 1e6::float8 FROM job_events WHERE run_id = %(run_id)s AND kind = 'start' ORDER BY seq, ts_us;

-- ---------------------------------------------------------------------------------------------------
-- The end of a run, from a queue's own tables (Adapter.busy, Adapter.completed; completion.py polls
-- `busy` every 20 ms and counts once a second): pgqueue's are in shared/pgqueue/sql/queries.sql
-- ---------------------------------------------------------------------------------------------------

-- procrastinate_busy --
-- Whether the queue holds a job waiting or running: a scalar subquery with the order of procrastinate's
-- partial index of such jobs, so that it stops at the first one. Not EXISTS, which drops the ORDER BY:
-- statistics taken before a drain would make a sequential scan look cheaper, and near the end it reads
-- every finished row (68 ms at 100,000 jobs, polled every 20 ms).
SELECT (SELECT 1 FROM procrastinate.procrastinate_jobs
         WHERE status IN ('todo', 'doing') AND queue_name = %(queue)s
         ORDER BY id LIMIT 1) IS NOT NULL;

-- procrastinate_completed --
SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE queue_name = %(queue)s AND status = 'succeeded';

-- pgqueuer_busy --
-- Whether a job of the queue's entrypoints (`<queue>:<workload>`) waits or runs in pgqueuer's queue table:
-- a finished job leaves it (one that failed for good stays, as `failed`). Waiting jobs per entrypoint in
-- the order of pgqueuer's partial index of them, picked ones in the order of its index of picked rows
-- (some hundreds): scalar subqueries with their index's ORDER BY, each stopping at the first row, as
-- pgqueue's `queue_busy`. With EXISTS, statistics taken before a drain chose a sequential scan, which reads
-- every deleted row still in the table (38 ms at 100,000 jobs, polled every 20 ms).
SELECT EXISTS (
           SELECT 1 FROM unnest(%(entrypoints)s::text[]) AS e(entrypoint)
            CROSS JOIN LATERAL (
                  SELECT 1 FROM pgqueuer.pgqueuer j
                   WHERE j.status = 'queued' AND j.entrypoint = e.entrypoint
                   ORDER BY j.entrypoint, j.priority DESC, j.id LIMIT 1) queued)
    OR (SELECT 1 FROM pgqueuer.pgqueuer
         WHERE status = 'picked' AND entrypoint = ANY(%(entrypoints)s)
         ORDER BY heartbeat LIMIT 1) IS NOT NULL;

-- pgqueuer_completed --
-- pgqueuer logs every finished job in its log table (aggregation marks the rows, it does not delete them).
SELECT count(*) FROM pgqueuer.pgqueuer_log
 WHERE status = 'successful' AND entrypoint = ANY(%(entrypoints)s);

-- worker_completions --
-- The jobs completed by the workers on a queue, by their own counts (shared/completions.py): a killed
-- or stopped worker's row keeps its last count, so the sum never goes back.
SELECT coalesce(sum(completed), 0) FROM queue.worker_completions WHERE %(queue)s = ANY(queues);

-- worker_completions_forget --
-- Once the workers of a queue the harness created have stopped, their counts go with the queue.
DELETE FROM queue.worker_completions WHERE %(queue)s = ANY(queues);

-- ---------------------------------------------------------------------------------------------------
-- Database load
-- ---------------------------------------------------------------------------------------------------

-- stats_flush --
-- PostgreSQL 15+ flushes statistics lazily: force this backend's out, then drop the cached snapshot.
SELECT pg_stat_force_next_flush();

-- stats_clear_snapshot --
SELECT pg_stat_clear_snapshot();

-- database_counters --
SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')
  FROM pg_stat_database
 WHERE datname = current_database();

-- queue_rows --
-- Dead and live rows of the queue schema's tables.
SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'queue';

-- backends --
-- Other backends and the application that opened each (the sampler finds a service's backends by prefix).
SELECT pid, application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid();

-- checkpoint --
CHECKPOINT;

-- setting --
SELECT current_setting(%(name)s);

-- ---------------------------------------------------------------------------------------------------
-- The raw ceiling (calibration.py), on queue.pgqueue_calibration: a primary key and a claim index
-- ---------------------------------------------------------------------------------------------------

-- calibration_empty --
TRUNCATE queue.pgqueue_calibration;

-- calibration_analyze --
VACUUM ANALYZE queue.pgqueue_calibration;

-- calibration_copy --
COPY queue.pgqueue_calibration (task, params, meta) FROM STDIN;

-- calibration_claim --
-- Claim a batch in one statement, as a queue's claim does at the least.
WITH picked AS (
    SELECT id FROM queue.pgqueue_calibration WHERE state = 0
     ORDER BY priority, run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE queue.pgqueue_calibration c SET state = 1 FROM picked WHERE c.id = picked.id
RETURNING c.id, c.task, c.params, c.meta;

-- calibration_complete --
UPDATE queue.pgqueue_calibration SET state = 2 WHERE id = ANY(%(ids)s::bigint[]);

-- calibration_insert --
INSERT INTO queue.pgqueue_calibration (task, params, meta) VALUES (%(task)s, %(params)s::jsonb, %(meta)s::jsonb);

-- calibration_listen --
LISTEN pgqueue_calibration;

-- calibration_notify --
SELECT pg_notify('pgqueue_calibration', %(payload)s);

-- calibration_enqueue_notify --
-- One job inserted and announced in one committed statement, as a queue's one-by-one enqueue at the least.
WITH job AS (
    INSERT INTO queue.pgqueue_calibration (task, params, meta)
    VALUES ('noop', '{}', jsonb_build_object('enqueued_at', %(enqueued_at)s::float8))
    RETURNING id
)
SELECT pg_notify('pgqueue_calibration', '') FROM job;
