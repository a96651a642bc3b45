-- The named queries of queue.workers, the workers' heartbeats (loaded by shared/heartbeat.py with
-- shared/sqlfile.py): what every worker writes, and what its health check, the benchmark harness and the web's
-- pages read (docs/architecture.md, "SQL"). Each can be pasted into psql as it is; parameters are %(name)s.
-- pgqueue's own statements on the table (its rescuer, its cleanup, its workers page) are pgqueue's queue
-- statements, in shared/pgqueue/sql/queries.sql; Flask-Admin's read-only view reads it through its model.

-- ---------------------------------------------------------------------------------------------------
-- Written by the workers
-- ---------------------------------------------------------------------------------------------------

-- worker_beat --
-- One heartbeat: the worker's row, made on its first beat and refreshed on every later one (a row marked
-- stopped runs again). On its first beat (%(announce)s true) the worker also NOTIFYs `queue_workers`
-- (shared.heartbeat.READY_CHANNEL; listen_workers below) with its id, in the same statement, so that whoever
-- waits for it to be ready (the benchmark harness) is woken at once.
WITH beat AS (
    INSERT INTO queue.workers (id, adapter, host, pid, queues, processes, slots, info, started_at, heartbeat_at,
                               spool_loaded_at)
    VALUES (%(id)s, %(adapter)s, %(host)s, %(pid)s, %(queues)s, %(processes)s, %(slots)s, %(info)s, now(), now(),
            %(spool_loaded_at)s)
    ON CONFLICT (id) DO UPDATE
       SET heartbeat_at = now(),
           info = EXCLUDED.info,
           queues = EXCLUDED.queues,
           spool_loaded_at = coalesce(EXCLUDED.spool_loaded_at, queue.workers.spool_loaded_at),
           stopped_at = NULL
    RETURNING id
)
SELECT pg_notify('queue_workers', id) FROM beat WHERE %(announce)s;

-- worker_stopped --
-- A worker is gone: by its own last word, or by its supervisor's as soon as a child of its exits (so that
-- pgqueue's rescuer need not wait for the heartbeat to age). A row already stopped keeps its time.
UPDATE queue.workers SET stopped_at = now() WHERE id = %(id)s AND stopped_at IS NULL;

-- worker_processes_spool_loaded --
-- A supervisor loaded its processes' spools up to %(loaded_at)s: said on the rows of its processes, whose
-- ids are `<its id>-<n>.<generation>`.
UPDATE queue.workers SET spool_loaded_at = %(loaded_at)s WHERE starts_with(id, %(id)s || '-');

-- ---------------------------------------------------------------------------------------------------
-- Read by the health checks (shared.heartbeat.check)
-- ---------------------------------------------------------------------------------------------------

-- worker_freshest_running --
-- The running worker of %(adapter)s on %(host)s (with %(pid)s, that very process) that beat last, and how
-- many seconds ago.
SELECT id, extract(epoch FROM now() - heartbeat_at)::float8 AS age
  FROM queue.workers
 WHERE adapter = %(adapter)s AND host = %(host)s AND stopped_at IS NULL
   AND (%(pid)s::integer IS NULL OR pid = %(pid)s::integer)
 ORDER BY heartbeat_at DESC
 LIMIT 1;

-- ---------------------------------------------------------------------------------------------------
-- Read by the benchmark harness (shared.bench.workers, shared.bench.executor, shared.bench.compare)
-- ---------------------------------------------------------------------------------------------------

-- worker_by_pid --
-- The heartbeat of the worker whose main process is %(pid)s on this host, newest first.
SELECT id, adapter, queues, processes, slots, info, heartbeat_at, spool_loaded_at, stopped_at
  FROM queue.workers
 WHERE pid = %(pid)s AND host = %(host)s
 ORDER BY started_at DESC
 LIMIT 1;

-- listen_workers --
-- A worker's first heartbeat NOTIFYs this channel (worker_beat; shared.heartbeat.READY_CHANNEL): the
-- harness waiting for workers to be ready wakes on it instead of polling alone.
LISTEN queue_workers;

-- worker_ready --
-- Whether the worker started at %(since)s (seconds) has heartbeated, and how many of its own processes
-- did (a supervisor's processes heartbeat as `<its id>-<n>` with role `process`).
SELECT count(*) FILTER (WHERE s.id IS NOT NULL),
       (SELECT count(*) FROM queue.workers p
         WHERE starts_with(p.id, s.id || '-') AND p.stopped_at IS NULL AND p.info->>'role' = 'process'
           AND p.heartbeat_at > to_timestamp(%(since)s) - interval '1 second')
  FROM queue.workers s
 WHERE s.pid = %(pid)s AND s.host = %(host)s AND s.stopped_at IS NULL
   AND s.heartbeat_at > to_timestamp(%(since)s) - interval '1 second'
 GROUP BY s.id;

-- workers_live --
-- Workers that beat within %(within)s seconds and have not stopped, newest beat first, at most %(limit)s
-- (NULL: all): what attached mode can use (the harness, and the web's form for a new experiment).
SELECT id, adapter, host, pid, queues, processes, slots, info, heartbeat_at
  FROM queue.workers
 WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => %(within)s)
 ORDER BY heartbeat_at DESC
 LIMIT %(limit)s;

-- workers_behind_spool --
-- Live workers that have not loaded their spools past %(last)s (seconds).
SELECT count(*) AS behind FROM queue.workers
 WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds'
   AND (spool_loaded_at IS NULL OR spool_loaded_at < to_timestamp(%(last)s));

-- ---------------------------------------------------------------------------------------------------
-- Read by the web's pages (services/web: web/runs.py, web/celery_info.py)
-- ---------------------------------------------------------------------------------------------------

-- workers_of_adapter --
-- The rows of an adapter's workers, running ones first, newest beat first, at most %(limit)s; `fresh`: it
-- beat within %(within)s seconds.
SELECT id, adapter, host, pid, queues, processes, slots, info, started_at, heartbeat_at, spool_loaded_at,
       stopped_at, heartbeat_at > now() - make_interval(secs => %(within)s) AS fresh
  FROM queue.workers
 WHERE adapter = %(adapter)s
 ORDER BY stopped_at IS NOT NULL, heartbeat_at DESC
 LIMIT %(limit)s;

-- worker_queues_on_broker --
-- The queues that an adapter's workers on a broker (their heartbeat's `info.broker`) consume, a row per
-- worker, at most %(limit)s.
SELECT queues
  FROM queue.workers
 WHERE adapter = %(adapter)s AND info->>'broker' = %(broker)s
 LIMIT %(limit)s;
