-- pgqueue's SQL, one named query per `-- name --` header (loaded by shared/shared/pgqueue/queries.py).
-- Parameters are psycopg's %(name)s placeholders; every query can be pasted into psql with values.
-- The channel of every NOTIFY is 'pgqueue' and its payload the queue name: a wake-up hint only.

-- enqueue_now --
-- One job claimable now (no run_at, no unique key): the hot path of one-by-one enqueue, prepared once
-- per connection. state and run_at take their defaults (available, now()); the NOTIFY rides in the
-- same statement and is sent at commit.
WITH ins AS (
    INSERT INTO queue.pgqueue_jobs (queue, task, params, meta, priority, max_attempts, timeout)
    VALUES (%(queue)s, %(task)s, %(params)s::jsonb, %(meta)s::jsonb, %(priority)s, %(max_attempts)s, %(timeout)s)
    RETURNING id, queue
)
SELECT id, pg_notify('pgqueue', queue)::text FROM ins;

-- enqueue --
-- One job. A future run_at makes it scheduled (the scheduler makes it available when due); the
-- NOTIFY rides in the same statement and is sent (at commit) only for a job claimable now.
WITH ins AS (
    INSERT INTO queue.pgqueue_jobs (state, queue, task, params, meta, priority, run_at, max_attempts, timeout)
    VALUES (CASE WHEN %(run_at)s::timestamptz > now() THEN 'scheduled' ELSE 'available' END::queue.pgqueue_job_state,
            %(queue)s, %(task)s, %(params)s::jsonb, %(meta)s::jsonb, %(priority)s,
            coalesce(%(run_at)s::timestamptz, now()), %(max_attempts)s, %(timeout)s)
    RETURNING id, queue, state
)
SELECT id, CASE WHEN state = 'available' THEN pg_notify('pgqueue', queue)::text END FROM ins;

-- enqueue_unique --
-- One job with a unique key: no row comes back when an active job (available, scheduled, running,
-- retryable) already holds the key (the partial unique index is the arbiter).
WITH ins AS (
    INSERT INTO queue.pgqueue_jobs (state, queue, task, params, meta, priority, run_at, max_attempts, timeout,
                                    unique_key)
    VALUES (CASE WHEN %(run_at)s::timestamptz > now() THEN 'scheduled' ELSE 'available' END::queue.pgqueue_job_state,
            %(queue)s, %(task)s, %(params)s::jsonb, %(meta)s::jsonb, %(priority)s,
            coalesce(%(run_at)s::timestamptz, now()), %(max_attempts)s, %(timeout)s, %(unique_key)s)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                                 AND state IN ('available', 'scheduled', 'running', 'retryable')
    DO NOTHING
    RETURNING id, queue, state
)
SELECT id, CASE WHEN state = 'available' THEN pg_notify('pgqueue', queue)::text END FROM ins;

-- enqueue_many_unique --
-- Many jobs from parallel arrays in one statement, deduplicated on their unique keys (within the
-- batch too); one NOTIFY per distinct queue that received claimable jobs.
WITH ins AS (
    INSERT INTO queue.pgqueue_jobs (state, queue, task, params, meta, priority, run_at, max_attempts, timeout,
                                    unique_key)
    SELECT CASE WHEN j.run_at > now() THEN 'scheduled' ELSE 'available' END::queue.pgqueue_job_state,
           j.queue, j.task, j.params, j.meta, j.priority, coalesce(j.run_at, now()), j.max_attempts, j.timeout,
           j.unique_key
      FROM unnest(%(queues)s::text[], %(tasks)s::text[], %(params)s::jsonb[], %(metas)s::jsonb[],
                  %(priorities)s::smallint[], %(run_ats)s::timestamptz[], %(max_attempts)s::smallint[],
                  %(timeouts)s::float8[], %(unique_keys)s::text[])
           AS j(queue, task, params, meta, priority, run_at, max_attempts, timeout, unique_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                                 AND state IN ('available', 'scheduled', 'running', 'retryable')
    DO NOTHING
    RETURNING queue, state
),
notified AS (
    SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM notified);

-- copy_jobs --
-- Bulk enqueue of jobs without run_at or unique key: COPY, run_at defaults to now().
COPY queue.pgqueue_jobs (queue, task, params, meta, priority, max_attempts, timeout) FROM STDIN;

-- copy_jobs_at --
-- Bulk enqueue of jobs with a run_at: they start scheduled and the scheduler makes them available
-- when due (COPY cannot compare with now(); see docs/pgqueue.md).
COPY queue.pgqueue_jobs (state, queue, task, params, meta, priority, run_at, max_attempts, timeout) FROM STDIN;

-- notify_queues --
-- The one NOTIFY (per distinct queue) that follows a COPY.
SELECT count(pg_notify('pgqueue', q)) FROM unnest(%(queues)s::text[]) AS q;

-- claim --
-- The hot path: claim up to %(limit)s available jobs of one queue for %(worker_id)s, in one statement.
WITH picked AS (
    -- 1. the next jobs in priority, run_at, id order: an ordered scan of ix_pgqueue_jobs_claim that
    --    skips rows other workers hold locked, so concurrent claims never wait on each other. The
    --    worker's connection disables sequential scans and sorts (queries.HOT_PATH_OPTIONS), so that
    --    its prepared statement keeps this scan whatever size the table had when it was planned.
    SELECT id
      FROM queue.pgqueue_jobs
     WHERE state = 'available'
       AND queue = %(queue)s
       -- 2. a paused queue yields nothing (an uncorrelated subquery: evaluated once per statement)
       AND NOT EXISTS (SELECT 1 FROM queue.pgqueue_queues p WHERE p.name = %(queue)s AND p.paused)
     ORDER BY priority, run_at, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
-- 3. take them: the attempt counts now, the owner is recorded for the completion and the rescuer;
--    found by `id = ANY`, a primary-key index condition (a join to picked can be planned as a hash
--    of the whole table when the table looks small: docs/pgqueue.md, "Statistics")
UPDATE queue.pgqueue_jobs j
   SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), worker_id = %(worker_id)s
 WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.task, j.params, j.meta, j.attempt, j.max_attempts, j.timeout, j.priority, j.run_at;

-- complete --
-- A batch of successful attempts. Ownership check: only a job still running this very attempt for
-- this worker is completed; a late completion (timed out, rescued, cancelled) changes nothing.
-- The rows are found by `id = ANY(ids)`, an index condition on the primary key that no join order
-- can bypass: the plan stays one primary-key lookup per id whatever the table's statistics say. A
-- join to unnest(ids, attempts) was planned as a whole-table scan nested with the batch (0.2-0.8 s
-- per batch instead of 5 ms) whenever the statistics were those of a smaller or empty table, as
-- after a queue sat empty and then got a burst (docs/pgqueue.md, "Statistics"). The attempt of each
-- (id, attempt) pair is checked against %(keys)s, one `id * 65536 + attempt` per job
-- (queries.attempt_keys): with the batch's values in the plan (the completer's connection plans each
-- statement with its values: queries.COMPLETER_OPTIONS), PostgreSQL looks a key up in a hash of the
-- array, so a batch costs time linear in its size. Finding each id's attempt by its position in the
-- batch (array_position per row) made a flush quadratic: 60 to 100 ms for 600 jobs, against 1 to 2 ms
-- (docs/benchmarks.md, "pgqueue"). The check is written `(...) IS TRUE` (same meaning in a
-- WHERE) so that it is a filter, not an index condition: as plain conditions the planner picks
-- ix_pgqueue_jobs_running by worker_id, whose dead entries grow with every job the worker claims.
UPDATE queue.pgqueue_jobs j
   SET state = 'completed', finished_at = now()
 WHERE j.id = ANY(%(ids)s::bigint[])
   AND (j.state = 'running' AND j.worker_id = %(worker_id)s::text
        AND j.id * 65536 + j.attempt = ANY(%(keys)s::bigint[])) IS TRUE;

-- fail --
-- A batch of failed attempts, found and checked as in complete (the same hashed %(keys)s): each error is
-- appended; the job is retryable after its delay (computed by the worker: shared.contract.retry_delay),
-- or discarded (final) when it has used max_attempts or the worker says it cannot ever succeed (unknown
-- task). Each job's entry, {"discard", "delay", "error"}, is looked up by its id in %(entries)s, one
-- jsonb object keyed by id (a binary search of its sorted keys), not by its position in the batch's
-- arrays: array_position per row made a flush of many failures quadratic, as it did for complete.
UPDATE queue.pgqueue_jobs j
   SET (state, run_at, finished_at, errors) = (
       SELECT CASE WHEN f.final THEN 'discarded' ELSE 'retryable' END::queue.pgqueue_job_state,
              CASE WHEN f.final THEN j.run_at ELSE now() + make_interval(secs => f.delay) END,
              CASE WHEN f.final THEN now() END,
              j.errors || jsonb_build_array(
                  f.error || jsonb_build_object(
                      'attempted_at', j.attempted_at, 'failed_at', now(),
                      'retry_at', CASE WHEN f.final THEN NULL ELSE now() + make_interval(secs => f.delay) END))
         FROM (SELECT (e->>'discard')::boolean OR j.attempt >= j.max_attempts, (e->>'delay')::float8, e->'error'
                 FROM (SELECT %(entries)s::jsonb -> j.id::text) AS x(e)) AS f(final, delay, error))
 WHERE j.id = ANY(%(ids)s::bigint[])
   AND (j.state = 'running' AND j.worker_id = %(worker_id)s::text
        AND j.id * 65536 + j.attempt = ANY(%(keys)s::bigint[])) IS TRUE;

-- hand_back --
-- Graceful shutdown: jobs this worker claimed and did not finish go back to available without penalty
-- (the attempt counted at claim is given back), in their original order.
WITH back AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'available', attempt = j.attempt - 1
     WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state = 'running' AND j.worker_id = %(worker_id)s
    RETURNING j.queue
),
notified AS (SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM back) q)
SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM notified);

-- recheck_held --
-- After a cancel, discard or pause (NOTIFY '!recheck'): of the jobs this worker claimed and has not
-- started, those of a paused queue go back to available without penalty; the ids still claimed by this
-- worker come back (the others were cancelled or discarded meanwhile, and must not run).
WITH back AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'available', attempt = j.attempt - 1
     WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state = 'running' AND j.worker_id = %(worker_id)s
       AND EXISTS (SELECT 1 FROM queue.pgqueue_queues p WHERE p.name = j.queue AND p.paused)
    RETURNING j.id
)
SELECT j.id FROM queue.pgqueue_jobs j
 WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state = 'running' AND j.worker_id = %(worker_id)s
   AND j.id NOT IN (SELECT id FROM back);

-- hand_back_unknown --
-- After a lost connection: a claim may have committed while its answer was lost. Jobs this worker
-- owns that it does not know of go back to available without penalty.
WITH back AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'available', attempt = j.attempt - 1
     WHERE j.state = 'running' AND j.worker_id = %(worker_id)s AND NOT (j.id = ANY(%(known)s::bigint[]))
    RETURNING j.queue
),
notified AS (SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM back) q)
SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM notified);

-- rescue --
-- The rescuer (leader only): running jobs whose owner stopped heartbeating for %(rescue_after)s
-- seconds, or stopped, or never registered. The attempt stays counted; the job is retried at once.
-- A lost attempt may never have started (a prefetched job), so it does not use up the job's last
-- attempt: the job gets one more, unless its attempt before was lost too (a job that kills its
-- worker is still discarded, after max_attempts + 1 runs at most).
WITH lost AS (
    SELECT j.id,
           j.attempt >= j.max_attempts
           AND (j.attempt >= 1000
                OR (j.errors -> -1 ->> 'class' = 'WorkerLost'
                    AND j.errors -> -1 ->> 'attempt' = (j.attempt - 1)::text)) AS final
      FROM queue.pgqueue_jobs j
     WHERE j.state = 'running'
       AND NOT EXISTS (
           SELECT 1 FROM queue.workers w
            WHERE w.id = j.worker_id AND w.stopped_at IS NULL
              AND w.heartbeat_at > now() - make_interval(secs => %(rescue_after)s))
       -- a claim younger than rescue_after may belong to a worker whose first heartbeat is in flight
       AND j.attempted_at < now() - make_interval(secs => %(rescue_after)s)
     ORDER BY j.id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE queue.pgqueue_jobs j
       SET state = CASE WHEN lost.final THEN 'discarded' ELSE 'available' END::queue.pgqueue_job_state,
           finished_at = CASE WHEN lost.final THEN now() END,
           max_attempts = CASE WHEN lost.final THEN j.max_attempts ELSE greatest(j.max_attempts, j.attempt + 1) END,
           errors = j.errors || jsonb_build_array(jsonb_build_object(
               'attempt', j.attempt, 'class', 'WorkerLost',
               'message', 'worker ' || j.worker_id || ' stopped heartbeating; job rescued',
               'worker_id', j.worker_id, 'attempted_at', j.attempted_at, 'failed_at', now(), 'traceback', NULL))
      FROM lost
     WHERE j.id = lost.id
    RETURNING j.queue, j.state
),
notified AS (
    SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'available') q
)
SELECT (SELECT count(*) FROM rescued), (SELECT count(*) FROM notified);

-- schedule --
-- The scheduler (leader only): scheduled and retryable jobs whose run_at has come become available.
WITH due AS (
    SELECT id FROM queue.pgqueue_jobs
     WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
     ORDER BY run_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
made AS (
    UPDATE queue.pgqueue_jobs j SET state = 'available' FROM due WHERE j.id = due.id RETURNING j.queue
),
notified AS (SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM made) q)
SELECT (SELECT count(*) FROM made), (SELECT count(*) FROM notified);

-- clean --
-- The cleaner (leader only): delete finished jobs past their state's retention, a bounded batch at a time.
-- One ordered range of ix_pgqueue_jobs_finished per state, oldest first: a retention chosen by a CASE
-- on the row's state is a filter, not a range, and made each run read every finished job.
WITH old_completed AS (
    SELECT id FROM queue.pgqueue_jobs
     WHERE state = 'completed' AND finished_at < now() - make_interval(secs => %(completed_retention)s::float8)
     ORDER BY finished_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
old_discarded AS (
    SELECT id FROM queue.pgqueue_jobs
     WHERE state = 'discarded' AND finished_at < now() - make_interval(secs => %(discarded_retention)s::float8)
     ORDER BY finished_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
old_cancelled AS (
    SELECT id FROM queue.pgqueue_jobs
     WHERE state = 'cancelled' AND finished_at < now() - make_interval(secs => %(cancelled_retention)s::float8)
     ORDER BY finished_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
-- found by `id = ANY`, a primary-key index condition (a join to the CTEs was a hash of the whole table)
DELETE FROM queue.pgqueue_jobs j
 WHERE j.id = ANY(ARRAY(SELECT id FROM old_completed UNION ALL SELECT id FROM old_discarded
                        UNION ALL SELECT id FROM old_cancelled));

-- clean_workers --
-- The cleaner also forgets worker rows that stopped (or went silent) long ago and own no running job.
DELETE FROM queue.workers w
 WHERE w.adapter = 'pgqueue'
   AND coalesce(w.stopped_at, w.heartbeat_at) < now() - make_interval(secs => %(worker_retention)s)
   AND NOT EXISTS (SELECT 1 FROM queue.pgqueue_jobs j WHERE j.state = 'running' AND j.worker_id = w.id);

-- refresh_counts --
-- The cached aggregate behind counts(): one GROUP BY over the table, stored with its duration, so the
-- dashboard reads one row however large the table is (the leader refreshes it every few seconds).
INSERT INTO queue.pgqueue_counts AS c (id, counts, refreshed_at, duration_ms)
SELECT true, coalesce(jsonb_object_agg(per_queue.queue, per_queue.states), '{}'::jsonb), now(),
       extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000
  FROM (SELECT queue, jsonb_object_agg(state, n) AS states
          FROM (SELECT queue, state, count(*) AS n FROM queue.pgqueue_jobs GROUP BY queue, state) s
         GROUP BY queue) per_queue
ON CONFLICT (id) DO UPDATE
   SET counts = EXCLUDED.counts, refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms
RETURNING counts, refreshed_at, duration_ms;

-- read_counts --
SELECT counts, refreshed_at, extract(epoch FROM now() - refreshed_at) AS age, duration_ms
  FROM queue.pgqueue_counts WHERE id;

-- try_counts_lock --
-- One refresher at a time (transaction-level advisory lock; key: hashtext('pgqueue.counts')).
SELECT pg_try_advisory_xact_lock(hashtext('pgqueue.counts'));

-- list_jobs --
-- The one listing query (admin pages, API, CLI, tests): optional filters, newest first, keyset on id.
-- %(floor)s, when given, bounds the scan to ids from it up (the admin pages' scan budget: a filter that
-- no index serves, such as a task name that matches nothing, would otherwise read the whole table).
SELECT id, state::text, queue, task, priority, attempt, max_attempts, run_at, created_at, attempted_at,
       finished_at, worker_id, unique_key, timeout, params, meta, jsonb_array_length(errors) AS error_count
  FROM queue.pgqueue_jobs
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(state)s::queue.pgqueue_job_state IS NULL OR state = %(state)s::queue.pgqueue_job_state)
   AND (%(task)s::text IS NULL OR task = %(task)s::text)
   AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
   AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text)
   AND (%(after)s::bigint IS NULL OR id < %(after)s::bigint)
   AND (%(floor)s::bigint IS NULL OR id >= %(floor)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- job_id_bounds --
-- The lowest and highest job ids (two ends of the primary key), where a bounded listing starts and stops.
SELECT min(id), max(id) FROM queue.pgqueue_jobs;

-- count_matching --
-- How many jobs the listing filters match, among %(states)s when given (the states a bulk action
-- changes), counting at most %(cap)s rows when given (LIMIT NULL counts them all). The unfinished
-- states are counted one branch each so that each uses its partial index (the claim index leads with
-- the queue; scheduled, retryable and running jobs are few); a branch whose state %(states)s or
-- %(state)s excludes is pruned when the statement is planned with its values. At 1,000,000 jobs, the
-- bulk confirmation of a cancel on a queue whose jobs had all finished took 90 ms as one scan of the
-- table, 4 ms so. The finished states stay one branch: counted apart, each walked
-- ix_pgqueue_jobs_finished (190 ms in all, against 100 ms for the one scan).
SELECT count(*)
  FROM ((SELECT 1 FROM queue.pgqueue_jobs
          WHERE state = 'available'
            AND (%(states)s::text[] IS NULL OR 'available' = ANY(%(states)s::text[]))
            AND (%(state)s::text IS NULL OR %(state)s::text = 'available')
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
            AND (%(task)s::text IS NULL OR task = %(task)s::text)
            AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
            AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text))
        UNION ALL
        (SELECT 1 FROM queue.pgqueue_jobs
          WHERE state = 'scheduled'
            AND (%(states)s::text[] IS NULL OR 'scheduled' = ANY(%(states)s::text[]))
            AND (%(state)s::text IS NULL OR %(state)s::text = 'scheduled')
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
            AND (%(task)s::text IS NULL OR task = %(task)s::text)
            AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
            AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text))
        UNION ALL
        (SELECT 1 FROM queue.pgqueue_jobs
          WHERE state = 'running'
            AND (%(states)s::text[] IS NULL OR 'running' = ANY(%(states)s::text[]))
            AND (%(state)s::text IS NULL OR %(state)s::text = 'running')
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
            AND (%(task)s::text IS NULL OR task = %(task)s::text)
            AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
            AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text))
        UNION ALL
        (SELECT 1 FROM queue.pgqueue_jobs
          WHERE state = 'retryable'
            AND (%(states)s::text[] IS NULL OR 'retryable' = ANY(%(states)s::text[]))
            AND (%(state)s::text IS NULL OR %(state)s::text = 'retryable')
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
            AND (%(task)s::text IS NULL OR task = %(task)s::text)
            AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
            AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text))
        UNION ALL
        (SELECT 1 FROM queue.pgqueue_jobs
          WHERE state IN ('completed', 'discarded', 'cancelled')
            AND (%(states)s::text[] IS NULL OR state::text = ANY(%(states)s::text[]))
            AND (%(states)s::text[] IS NULL
                 OR %(states)s::text[] && ARRAY['completed', 'discarded', 'cancelled'])
            AND (%(state)s::text IS NULL OR %(state)s::text IN ('completed', 'discarded', 'cancelled'))
            AND (%(state)s::queue.pgqueue_job_state IS NULL OR state = %(state)s::queue.pgqueue_job_state)
            AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
            AND (%(task)s::text IS NULL OR task = %(task)s::text)
            AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
            AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text))
        LIMIT %(cap)s) matching;

-- count_matching_scan --
-- count_matching for a filter on the task or a task-name prefix, which no index serves: one scan of the
-- table (in parallel where the server allows), cheaper than count_matching's five branches that would
-- each read their part of it (156 ms against 90 ms at 1,000,000 jobs for a task that matches nothing).
-- %(floor)s, when given, bounds the scan to ids from it up (the admin pages' scan budget, as list_jobs).
SELECT count(*)
  FROM (SELECT 1 FROM queue.pgqueue_jobs
         WHERE (%(floor)s::bigint IS NULL OR id >= %(floor)s::bigint)
           AND (%(states)s::text[] IS NULL OR state::text = ANY(%(states)s::text[]))
           AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
           AND (%(state)s::queue.pgqueue_job_state IS NULL OR state = %(state)s::queue.pgqueue_job_state)
           AND (%(task)s::text IS NULL OR task = %(task)s::text)
           AND (%(search_id)s::bigint IS NULL OR id = %(search_id)s::bigint)
           AND (%(search_prefix)s::text IS NULL OR task LIKE %(search_prefix)s::text)
         LIMIT %(cap)s) matching;

-- queue_busy --
-- Whether queue %(queue)s still holds a job that is not finished: three lookups, each stopping at the
-- first row of a partial index, so that polling it while a queue drains costs next to nothing (a count
-- would read every row). Scalar subqueries with their index's ORDER BY, not EXISTS (which drops both):
-- statistics taken before a drain (every row available) would otherwise make a sequential scan look
-- cheaper, and it reads the whole table.
SELECT (SELECT 1 FROM queue.pgqueue_jobs WHERE state = 'available' AND queue = %(queue)s
         ORDER BY queue, priority, run_at, id LIMIT 1) IS NOT NULL
    OR (SELECT 1 FROM queue.pgqueue_jobs WHERE state = 'running' AND queue = %(queue)s
         ORDER BY worker_id LIMIT 1) IS NOT NULL
    OR (SELECT 1 FROM queue.pgqueue_jobs WHERE state IN ('scheduled', 'retryable') AND queue = %(queue)s
         ORDER BY run_at LIMIT 1) IS NOT NULL;

-- delete_finished --
-- Delete the finished jobs (completed, discarded, cancelled) of queue %(queue)s now, whatever their
-- retention: what the cleaner would do later, for a caller that owns the queue (the benchmark, between runs).
DELETE FROM queue.pgqueue_jobs
 WHERE queue = %(queue)s AND state IN ('completed', 'discarded', 'cancelled');

-- finished_span --
-- The first claim and the last completion of the completed jobs of queue %(queue)s, in seconds since the
-- epoch (database clock), and how many: the span of a drain measured without job records (the benchmark's
-- recorder-off runs, which delete the finished jobs before the next run).
SELECT extract(epoch FROM min(attempted_at))::float8, extract(epoch FROM max(finished_at))::float8, count(*)
  FROM queue.pgqueue_jobs
 WHERE queue = %(queue)s AND state = 'completed';

-- get_job --
SELECT id, state::text, queue, task, priority, attempt, max_attempts, run_at, created_at, attempted_at,
       finished_at, worker_id, unique_key, timeout, params, meta, errors
  FROM queue.pgqueue_jobs WHERE id = %(id)s;

-- action_retry --
-- Retry (operator): finished or retryable jobs run again now. An exhausted job gets one more attempt;
-- a job whose unique key another active job holds is left alone. Applies to the ids, or to the
-- listing filters when ids is NULL.
WITH candidates AS (
    SELECT j.id, j.unique_key
      FROM queue.pgqueue_jobs j
     WHERE j.state IN ('retryable', 'completed', 'discarded', 'cancelled')
       AND j.attempt < 1000
       AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(state)s::queue.pgqueue_job_state IS NULL OR j.state = %(state)s::queue.pgqueue_job_state)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
       AND (%(search_id)s::bigint IS NULL OR j.id = %(search_id)s::bigint)
       AND (%(search_prefix)s::text IS NULL OR j.task LIKE %(search_prefix)s::text)
),
chosen AS (
    -- one job per unique key: the statement cannot see the rows it updates itself, so two finished
    -- jobs of one key would both become active and the unique index would fail the whole retry.
    -- A key another active job holds is left alone; of the candidates of a free key, the newest runs.
    SELECT id FROM candidates WHERE unique_key IS NULL
    UNION ALL
    (SELECT DISTINCT ON (c.unique_key) c.id
       FROM candidates c
      WHERE c.unique_key IS NOT NULL
        AND NOT EXISTS (
            SELECT 1 FROM queue.pgqueue_jobs o
             WHERE o.unique_key = c.unique_key AND o.id <> c.id
               AND o.state IN ('available', 'scheduled', 'running', 'retryable'))
      ORDER BY c.unique_key, c.id DESC)
),
upd AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'available', run_at = now(), finished_at = NULL,
           max_attempts = greatest(j.max_attempts, j.attempt + 1)
     WHERE j.id IN (SELECT id FROM chosen)
       AND j.state IN ('retryable', 'completed', 'discarded', 'cancelled')
    RETURNING j.queue
),
notified AS (SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM upd) q)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM notified);

-- action_run_now --
-- Run now (operator): scheduled or retryable jobs become available at once.
WITH upd AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'available', run_at = now()
     WHERE j.state IN ('scheduled', 'retryable')
       AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(state)s::queue.pgqueue_job_state IS NULL OR j.state = %(state)s::queue.pgqueue_job_state)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
       AND (%(search_id)s::bigint IS NULL OR j.id = %(search_id)s::bigint)
       AND (%(search_prefix)s::text IS NULL OR j.task LIKE %(search_prefix)s::text)
    RETURNING j.queue
),
notified AS (SELECT pg_notify('pgqueue', q.queue) FROM (SELECT DISTINCT queue FROM upd) q)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM notified);

-- action_cancel --
-- Cancel (operator): a job that has not finished ends cancelled. A running attempt's thread cannot be
-- stopped; its completion is ignored by the ownership check. A job a worker claimed and has not
-- started is dropped by that worker when the NOTIFY reaches it.
WITH upd AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'cancelled', finished_at = now()
     WHERE j.state IN ('available', 'scheduled', 'running', 'retryable')
       AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(state)s::queue.pgqueue_job_state IS NULL OR j.state = %(state)s::queue.pgqueue_job_state)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
       AND (%(search_id)s::bigint IS NULL OR j.id = %(search_id)s::bigint)
       AND (%(search_prefix)s::text IS NULL OR j.task LIKE %(search_prefix)s::text)
    RETURNING j.id
),
-- workers drop what they hold of these jobs and have not started (payload '!recheck', not a queue name)
notified AS (SELECT pg_notify('pgqueue', '!recheck') WHERE EXISTS (SELECT 1 FROM upd))
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM notified);

-- action_discard --
-- Discard (operator): a job that has not finished ends discarded, with the reason recorded.
WITH upd AS (
    UPDATE queue.pgqueue_jobs j
       SET state = 'discarded', finished_at = now(),
           errors = j.errors || jsonb_build_array(jsonb_build_object(
               'attempt', j.attempt, 'class', 'Discarded', 'message', 'discarded by an operator',
               'failed_at', now(), 'traceback', NULL))
     WHERE j.state IN ('available', 'scheduled', 'running', 'retryable')
       AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(state)s::queue.pgqueue_job_state IS NULL OR j.state = %(state)s::queue.pgqueue_job_state)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
       AND (%(search_id)s::bigint IS NULL OR j.id = %(search_id)s::bigint)
       AND (%(search_prefix)s::text IS NULL OR j.task LIKE %(search_prefix)s::text)
    RETURNING j.id
),
-- workers drop what they hold of these jobs and have not started (payload '!recheck', not a queue name)
notified AS (SELECT pg_notify('pgqueue', '!recheck') WHERE EXISTS (SELECT 1 FROM upd))
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM notified);

-- pause_queue --
-- Pausing also tells the workers to hand back the jobs of the queue they claimed and have not started.
WITH up AS (
    INSERT INTO queue.pgqueue_queues (name, paused, paused_at) VALUES (%(name)s, true, now())
    ON CONFLICT (name) DO UPDATE SET paused = true, paused_at = coalesce(queue.pgqueue_queues.paused_at, now()),
                                     updated_at = now()
    RETURNING name
)
SELECT name, pg_notify('pgqueue', '!recheck')::text FROM up;

-- resume_queue --
-- Resuming wakes the workers of the queue.
WITH up AS (
    INSERT INTO queue.pgqueue_queues (name, paused, paused_at) VALUES (%(name)s, false, NULL)
    ON CONFLICT (name) DO UPDATE SET paused = false, paused_at = NULL, updated_at = now()
    RETURNING name
)
SELECT name, pg_notify('pgqueue', name)::text FROM up;

-- list_queues --
SELECT name, paused, paused_at, updated_at FROM queue.pgqueue_queues ORDER BY name;

-- list_workers --
SELECT id, host, pid, queues, processes, slots, info, started_at, heartbeat_at, spool_loaded_at, stopped_at,
       stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => %(alive_within)s) AS alive,
       (SELECT count(*) FROM queue.pgqueue_jobs j WHERE j.state = 'running' AND j.worker_id = w.id) AS running
  FROM queue.workers w
 WHERE adapter = 'pgqueue'
 ORDER BY started_at DESC, id;

-- upsert_cron --
-- A cron entry; a new entry starts ticking from now (no backfill), a changed one keeps its last tick.
-- Registering an entry again clears the error that made the leader set it aside.
INSERT INTO queue.pgqueue_cron (name, schedule, task, params, queue, priority, max_attempts, enabled)
VALUES (%(name)s, %(schedule)s, %(task)s, %(params)s::jsonb, %(queue)s, %(priority)s, %(max_attempts)s, %(enabled)s)
ON CONFLICT (name) DO UPDATE
   SET schedule = EXCLUDED.schedule, task = EXCLUDED.task, params = EXCLUDED.params, queue = EXCLUDED.queue,
       priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts, enabled = EXCLUDED.enabled,
       error = NULL, failed_at = NULL, updated_at = now()
RETURNING name;

-- delete_cron --
DELETE FROM queue.pgqueue_cron WHERE name = %(name)s;

-- list_cron --
SELECT name, schedule, task, params, queue, priority, max_attempts, enabled, last_tick, last_job_id,
       error, failed_at, created_at, updated_at
  FROM queue.pgqueue_cron ORDER BY name;

-- lock_due_cron --
-- The cron service (leader only) locks the enabled entries that have not failed; the tick enqueues and
-- the last_tick advance commit together, so no tick fires twice even across a change of leader.
SELECT name, schedule, task, params, queue, priority, max_attempts, last_tick, now() AS db_now
  FROM queue.pgqueue_cron WHERE enabled AND failed_at IS NULL ORDER BY name FOR UPDATE SKIP LOCKED;

-- fail_cron --
-- The cron service sets aside an entry it cannot run (its schedule never fires, its tick raised):
-- it no longer fires, and the admin sees why, until it is registered again.
UPDATE queue.pgqueue_cron SET error = %(error)s, failed_at = now() WHERE name = %(name)s;

-- advance_cron --
UPDATE queue.pgqueue_cron SET last_tick = %(last_tick)s, last_job_id = coalesce(%(job_id)s, last_job_id)
 WHERE name = %(name)s;

-- try_leader --
-- Leader election: a session-level advisory lock, held by one connection of the leader while it lives.
SELECT pg_try_advisory_lock(hashtext('pgqueue.leader'));
