"""The one shape every contender of the benchmark fills in: `Adapter` (docs/architecture.md, "Adding a queue").

The harness, the report and the web never ask which queue a case runs on; they ask the case's adapter.
An adapter says:

- which variants it has (`options`: Celery's broker and configuration, ...) and how a result names one
  (`label`), how equal slots map to its execution model (`layout`, `slot_mapping`);
- whether it can run here, and why not (`unavailable`), and what configuration a run records (`configuration`);
- how the harness starts its workers in managed mode (`worker_argv`, `worker_env`), when they are ready
  (`child_heartbeats`), which of their processes run jobs (`victims`) and which servers they load
  (`servers`, `backend_prefixes`);
- how to enqueue one job and many (`enqueuer`), how it tells the end of a run from its own tables or its
  workers' own count, recording or not (`busy`, `completed`; `recording_pair_jobs` sizes its recording
  pair), what it cleans between runs (`settle`).

A module per queue implements it (`shared.bench.adapters.pgqueue`, `.celery`), and one line of
`shared.bench.adapters` registers it. Only those modules import a queue's library.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psutil

from shared import peers

if TYPE_CHECKING:  # pragma: no cover - types only
    import psycopg

    from shared import settings
    from shared.bench.spec import Case


class AdapterUnavailable(RuntimeError):
    """The queue cannot be used here (its broker does not answer, its worker did not start)."""


@dataclass(frozen=True)
class Option:
    """One dimension of an adapter's variants, such as Celery's broker.

    `matrix_key` is the list of values a matrix spec gives for it (`"brokers": ["redis", "rabbitmq"]`);
    `aliases` are the names older specs used for it. A variant's label (`Adapter.label`) shows the value as
    `tag` formats it, and only when it is not the default unless the option is `always_labelled`.
    """

    name: str
    choices: tuple[str, ...]
    default: str
    help: str
    matrix_key: str
    aliases: tuple[str, ...] = ()
    tag: str = "{}"
    always_labelled: bool = False


def meta(run_id: int, seq: int, enqueued_at: float, scheduled_at: float | None = None) -> dict[str, Any]:
    """The `meta` the harness attaches to every job (docs/architecture.md, "The job contract")."""
    m: dict[str, Any] = {"run_id": run_id, "seq": seq, "enqueued_at": enqueued_at}
    if scheduled_at is not None:
        m["scheduled_at"] = scheduled_at
    return m


class Enqueuer(abc.ABC):
    """Sends the jobs of one run through one queue's client; opened before the timed window."""

    def __init__(self, case: Case, queue: str, env: Mapping[str, str]) -> None:
        self.case = case
        self.queue = queue
        self.env = env
        self.workload = case.workload
        self.params = dict(case.params)

    @abc.abstractmethod
    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        """One job in its own transaction or publish, stamped with the time it is sent."""

    @abc.abstractmethod
    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        """Many jobs through the fastest batch API the queue offers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection or producer."""


class Adapter(abc.ABC):
    """One contender: its variants, its workers and its client, as the harness uses them."""

    name: ClassVar[str]
    """The registry key, the `adapter` of a case and the first part of its label."""
    summary: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    backend_prefixes: ClassVar[tuple[str, ...]] = ()
    """`application_name` prefixes of the PostgreSQL connections its workers open (sampled for CPU)."""
    child_heartbeats: ClassVar[bool] = False
    """Its worker's processes heartbeat each on their own: the harness waits for all before a run."""
    queue_tables: ClassVar[tuple[str, ...]] = ()
    """The tables of the harness's database that a batch lands in: a held drain analyzes them between its
    enqueue and the release, so every queue meets its batch with fresh statistics (docs/benchmark.md, "Drain
    means drain")."""
    pair_by_default: ClassVar[bool] = False
    """Its recording pair is in the default matrix; the others' run with `--full` or `--parts overhead` (the
    default matrix keeps within 10 minutes, docs/benchmark.md)."""
    counts_completions: ClassVar[bool] = False
    """`busy` and `completed` tell the end of a run without the records (from the queue's own tables, or its
    workers' own count), so it can run with recording off."""
    times_drains: ClassVar[bool] = False
    """`drain_span` tells a run's first start and last finish from the queue's own tables, so the `queue`
    command can time a drain with the recorder off."""
    worker_script: ClassVar[str]
    """The console script of its worker service, which the harness starts in managed mode."""
    packages: ClassVar[tuple[str, ...]] = ()
    """The Python packages whose versions each run records."""

    # ---- variants -------------------------------------------------------------------------------

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def resolve(self, options: Mapping[str, str]) -> dict[str, str]:
        """Every option of this adapter with its value (given or default), in declaration order."""
        return {o.name: options.get(o.name, o.default) for o in self.options}

    def label(self, options: Mapping[str, str]) -> str:
        """How results name this variant: the adapter's name and its options' values, dotted, each as its
        option's `tag` formats it; a value at its default is left out unless the option is `always_labelled`
        (`pgqueue`, `pgqueue.relaxed`, `pgqueuer.batch10`, `celery.redis.defaults.threads`)."""
        values = self.resolve(options)
        shown = [
            o.tag.format(values[o.name])
            for o in self.options
            if o.always_labelled or values[o.name] != o.default
        ]
        return ".".join([self.name, *shown])

    def layout(self, total_slots: int) -> tuple[int, int]:
        """Worker processes and slots per process that give `total_slots` in this queue's natural shape."""
        return 1, total_slots

    def default_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        """The variants the default matrix measures; `brokers` are the brokers that answer."""
        return [{}]

    def fault_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        """The variants the default matrix's fault runs use."""
        return self.default_variants(brokers=brokers, full=full)[:1]

    def slot_mapping(self, case: Case) -> str:
        """One sentence saying how the case's slots map to this queue's execution model."""
        return f"{case.processes} process(es) x {case.slots} slots ({case.total_slots} slots)"

    def check_case(self, case: Case) -> dict[str, str]:
        """Adapter rules a case must follow: field -> what is wrong (empty when it may run)."""
        if not case.recording and not self.counts_completions:
            return {
                "recording": f"{self.name} cannot run with recording off: it has no completion signal of its own"
            }
        return {}

    # ---- its own benchmark (`python -m shared.bench queue --adapter NAME`) -------------------------

    queue_defaults: ClassVar[dict[str, float]] = {
        "jobs": 10_000,
        "one_by_one_jobs": 1_000,
        "latency_seconds": 0,
        "large": 0,
    }
    """Sizes of the `queue` command's runs for this adapter (0: not run unless asked for)."""

    def add_queue_arguments(self, p: argparse.ArgumentParser) -> None:
        """The `queue` command's options for this adapter's variants and worker settings (none by default)."""
        return None

    def queue_variants(self, args: argparse.Namespace) -> list[tuple[dict[str, str], int, int]]:
        """The variants the `queue` command measures: (options, processes, slots per process)."""
        return [({}, *self.layout(8))]

    def queue_env(self, args: argparse.Namespace) -> dict[str, str]:
        """Worker settings the `queue` command's options set, as the worker's environment variables."""
        return {}

    # ---- environment ----------------------------------------------------------------------------

    def unavailable(self, options: Mapping[str, str], s: settings.Settings) -> str | None:
        """None when this variant can run here, else one line saying why not and what to do."""
        return None

    def configuration(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        """What a run records of this variant's configuration (URLs redacted)."""
        return dict(self.resolve(options))

    def durability(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        """What this variant promises about an acknowledged enqueue, read from its servers themselves where
        they tell (settings, versions), with `promise`, one sentence for the report (docs/benchmark.md,
        "Durability"). The default: nothing stated."""
        return {}

    def servers(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, int]:
        """Server processes besides PostgreSQL that this variant loads: name -> local TCP port."""
        return {}

    def worker_environment(self, options: Mapping[str, str], database_url: str) -> dict[str, str]:
        """Environment variables this variant's workers and enqueuer get on top of the harness's (the
        default: none)."""
        return {}

    @contextlib.contextmanager
    def group_env(self, options: Mapping[str, str], database_url: str) -> Iterator[dict[str, str]]:
        """Environment a group of workers and its enqueuer share for their lifetime, where the variant
        keeps its messages in tables that a database of the group's own keeps fresh (the `queue`
        command isolates its runs so); the default adds nothing."""
        yield {}

    def drop_queue(self, options: Mapping[str, str], queue: str, env: Mapping[str, str]) -> None:
        """Remove the queue the harness created for a worker group, once the group stopped (the
        default: nothing to remove)."""
        return None

    # ---- workers --------------------------------------------------------------------------------

    @abc.abstractmethod
    def worker_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        """The command line of one managed worker for `case`, listening on `queue`."""

    def victims(self, root_pid: int) -> list[int]:
        """The processes of a worker that run jobs, first choice first (faults strike one of them)."""
        try:
            children = psutil.Process(root_pid).children(recursive=True)
        except psutil.Error:
            return []
        return [c.pid for c in children] or [root_pid]

    def redelivery(self, case: Case) -> str | None:
        """One sentence the fault report prints: what brings a killed worker's jobs back in this variant,
        with any timeout it waits on (None: nothing to say)."""
        return None

    def attached_queue(self, workers: Sequence[Mapping[str, Any]], options: Mapping[str, str]) -> str | None:
        """The queue a live worker of this variant announces in its heartbeat (attached mode)."""
        for w in workers:
            if w["adapter"] == self.name and w["queues"]:
                return str(w["queues"][0])
        return None

    # ---- jobs -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueuer(self, case: Case, queue: str, env: Mapping[str, str]) -> Enqueuer:
        """An open client that sends `case`'s jobs to `queue`."""

    def busy(self, conn: psycopg.Connection, queue: str) -> bool:
        """Whether `queue` holds a job not yet finished: a cheap poll (only where `counts_completions`). A
        queue that cannot see its unfinished jobs answers False: the run then ends when `completed`, read
        at every poll, reaches the jobs sent."""
        raise NotImplementedError(f"{self.name} keeps no count of its own")

    def completed(self, conn: psycopg.Connection, queue: str) -> int:
        """How many jobs of `queue` completed, by the queue's own tables or its workers' own count (only
        where `counts_completions`); it does not go back during a run (`settle` may lower it between runs)."""
        raise NotImplementedError(f"{self.name} keeps no count of its own")

    def drain_span(self, conn: psycopg.Connection, queue: str) -> tuple[float, float, int] | None:
        """The first start and the last finish (seconds since the epoch) of the jobs of `queue` that
        completed, and how many, by the queue's own tables: the drain of a run that keeps no job records
        (only where `counts_completions`; None: it cannot tell)."""
        return None

    def recording_pair_jobs(self, options: Mapping[str, str]) -> int:
        """Jobs of each run of this variant's recording pair (recording on and off), at most: enough for a
        noop drain of some seconds at its pace, not minutes (`--overhead-jobs` can only lower it)."""
        return 100_000

    def settle(self, conn: psycopg.Connection, queue: str) -> tuple[str, ...]:
        """Between runs: delete what the run left in the queue's tables that the next run would pay for;
        return the tables it wrote (the harness vacuums them after a large run)."""
        return ()


class SupervisedAdapter(Adapter):
    """A queue whose worker is a supervisor of P job processes of N slots each (pgqueue, procrastinate,
    pgqueuer): two processes by default, so that CPU-bound work is not bound by one GIL, and the
    supervisor's children are the processes that run jobs."""

    slots_flag: ClassVar[str] = "--slots"
    """The worker's option for the slots of one process."""

    def layout(self, total_slots: int) -> tuple[int, int]:
        return (2, max(1, total_slots // 2)) if total_slots >= 2 else (1, total_slots)

    def supervised_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        """The worker's command line for the case's processes and slots on `queue`, quiet, recording or not."""
        argv = [str(bin_dir / self.worker_script), "--processes", str(case.processes)]
        argv += [self.slots_flag, str(case.slots), "--queues", queue, "--loglevel", "WARNING"]
        return argv if case.recording else [*argv, "--no-record"]

    def victims(self, root_pid: int) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(root_pid).children()]
        except psutil.Error:
            return []


def postgres_durability(url: str) -> dict[str, Any]:
    """PostgreSQL's version and the settings that decide whether a committed transaction survives a crash,
    as the server at `url` reports them (`error` when it cannot be asked)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')"
            ).fetchall()
    except psycopg.Error as exc:
        return {"server": "postgresql", "error": str(exc).strip().splitlines()[0]}
    return {"server": "postgresql", **{str(k): v for k, v in rows}}


def postgres_promise(url: str, what: str = "an enqueue") -> dict[str, Any]:
    """`postgres_durability(url)` with its `promise`: what a committed `what` survives, for every queue whose
    enqueue is one committed transaction in PostgreSQL (pgqueue, procrastinate, pgqueuer)."""
    d = postgres_durability(url)
    commit = d.get("synchronous_commit")
    if d.get("fsync") == "on" and commit not in ("off", "local", None):
        promise = (
            f"{what} returns once its transaction committed, flushed to disk (fsync on, synchronous_commit "
            f"{commit}): it survives a crash of the server"
        )
    else:
        promise = (
            f"{what} returns on commit, but fsync={d.get('fsync')}, synchronous_commit={commit}: the last "
            "commits can be lost in a crash of the server"
        )
    return {**d, "promise": promise}


PEER_EXECUTION = Option(
    "execution",
    peers.EXECUTIONS,
    peers.EXECUTIONS[0],
    "job bodies in threads (threads), or on the event loop (inline: one at a time per process)",
    "executions",
)
"""The peers' (procrastinate's, pgqueuer's) arguable choice of how a synchronous job body runs
(`shared.peers.EXECUTIONS`): the default `threads`, and `inline` with `--full` (docs/benchmarks.md, "The
peers' settings")."""


def announced_queue(
    workers: Sequence[Mapping[str, Any]], adapter: str, expected: Mapping[str, str]
) -> str | None:
    """The first queue a live worker of `adapter` announces whose heartbeat `info` shows the `expected`
    settings (attached mode: a variant runs only on workers that run it). A setting its `info` leaves out
    counts as the worker's default: `execution` then is `threads`, what every peer worker ran before it
    announced one."""
    for w in workers:
        info = w.get("info") or {}
        seen = {"execution": peers.EXECUTIONS[0], **{k: str(v) for k, v in info.items()}}
        if w["adapter"] == adapter and w["queues"] and all(seen.get(k, v) == v for k, v in expected.items()):
            return str(w["queues"][0])
    return None


def peer_execution(execution: str, threads: str) -> str:
    """What a run records of a peer's `execution`; `threads` says which threads run the job bodies."""
    if execution == "threads":
        return (
            f"threads: the synchronous job body runs in a thread, handed off from the event loop ({threads})"
        )
    return (
        "inline: the async task calls the synchronous job body on the event loop, no thread hand-off; the "
        "slots still bound the jobs a process holds, but a blocking body holds the loop, so a sleep job runs "
        "one at a time per process"
    )
