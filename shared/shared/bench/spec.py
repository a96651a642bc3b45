"""What an experiment runs: cases, their validation, and the default matrix (design section 6).

A *case* is one combination of adapter (with broker and Celery configuration), job count, scheduling
mode, workload, scenario, worker processes and slots. A *spec* is a list of cases and a number of
repetitions. `validate_spec(dict)` is the one entry point for the command line and the web form; it
raises `SpecError` whose `.errors` maps each bad field to one message.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shared import workloads

ADAPTERS = ("celery", "pgqueue")
# The same names as `shared.celery_app` (a test keeps them equal); not imported from there so that
# validating a spec does not import Celery.
BROKERS = ("postgres", "redis", "rabbitmq")
CONFIGURATIONS = ("defaults", "reliable")
SCHEDULING_MODES = ("one_by_one", "bulk")
SCENARIOS = ("drain", "steady", "burst", "fault")
FAULTS = ("kill_worker", "restart_postgres")
BENCH_WORKLOADS = tuple(sorted(workloads.REGISTRY))
MAX_JOBS = 2_000_000
MAX_SLOTS = 256
MAX_REPETITIONS = 50


class SpecError(ValueError):
    """A spec that cannot run; `.errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class Case:
    """One combination to measure; each repetition of it is one `BenchmarkRun`."""

    adapter: str
    jobs: int
    workload: str = "noop"
    params: dict[str, Any] = field(default_factory=dict)
    scheduling: str = "bulk"
    scenario: str = "drain"
    broker: str | None = None
    celery_config: str | None = None
    processes: int = 1
    slots: int = 10
    rate: float | None = None
    """Steady scenario: arrivals per second (jobs / rate is its duration)."""
    bursts: int | None = None
    """Burst scenario: how many equal bursts, one second apart."""
    fault: str | None = None
    recording: bool = True
    repetitions: int | None = None
    """Overrides the spec's repetitions (fault runs are single repetitions)."""

    @property
    def key(self) -> str:
        """A readable, stable identifier of the case (shared by its repetitions)."""
        who = f"celery.{self.broker}.{self.celery_config}" if self.adapter == "celery" else "pgqueue"
        work = self.workload + "".join(f".{k}{v}" for k, v in sorted(self.params.items()))
        extra = ""
        if self.scenario == "steady":
            extra = f"@{self.rate:g}/s"
        elif self.scenario == "burst":
            extra = f"x{self.bursts}"
        elif self.scenario == "fault":
            extra = f".{self.fault}"
        rec = "" if self.recording else ".norec"
        return (
            f"{who}/{self.scenario}{extra}/{work}/{self.scheduling}/n{self.jobs}"
            f"/p{self.processes}s{self.slots}{rec}"
        )

    @property
    def family(self) -> str:
        """The comparison this case belongs to: everything but the adapter, broker and configuration,
        and with total slots instead of processes x slots (both queues get the same total)."""
        return family_of(self.key)

    @property
    def who(self) -> str:
        """The adapter as a result row names it: `pgqueue` or `celery.<broker>.<configuration>`."""
        return self.key.split("/", 1)[0]

    @property
    def total_slots(self) -> int:
        return self.processes * self.slots

    def celery_pool(self) -> tuple[str, int]:
        """How the case's slots map to Celery's pool: prefork (Celery's default pool) with one child
        process per slot, so Celery gets the same number of concurrent jobs as pgqueue."""
        return "prefork", self.total_slots

    def slot_mapping(self) -> str:
        """One sentence saying how the equal slots map to each queue's execution model."""
        if self.adapter == "celery":
            pool, conc = self.celery_pool()
            return f"celery --pool {pool} --concurrency {conc} ({self.total_slots} slots)"
        return f"pgqueue --processes {self.processes} --threads {self.slots} ({self.total_slots} slots)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Spec:
    """A validated experiment: its cases and how many interleaved repetitions each gets."""

    cases: tuple[Case, ...]
    repetitions: int = 5
    seed: int = 1
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": [c.to_dict() for c in self.cases],
            "repetitions": self.repetitions,
            "seed": self.seed,
            "notes": list(self.notes),
        }

    def schedule(self) -> list[tuple[Case, int]]:
        """Runs in execution order: repetition rounds, the case order rotated each round so that no
        case always goes first (interleaving), fault and one-off cases once, at the end.

        A recording-off case runs right beside its recording twin, before it in every other round, so
        that each round's pair meets the same machine and neither side always follows the same run:
        the recording overhead is taken pair by pair (`report`)."""
        regular = [c for c in self.cases if c.scenario != "fault" and not c.repetitions]
        single = [c for c in self.cases if c.scenario == "fault" or c.repetitions]
        keys = {c.key for c in regular}
        twins = {
            c.key.removesuffix(".norec"): c
            for c in regular
            if not c.recording and c.key.removesuffix(".norec") in keys
        }
        lead = [c for c in regular if c.recording or c.key.removesuffix(".norec") not in keys]
        out: list[tuple[Case, int]] = []
        for rep in range(1, self.repetitions + 1):
            if lead:
                shift = (rep - 1) % len(lead)
                for c in lead[shift:] + lead[:shift]:
                    twin = twins.get(c.key)
                    pair = [c] if twin is None else [c, twin] if rep % 2 else [twin, c]
                    out.extend((x, rep) for x in pair)
        for c in single:
            reps = 1 if c.scenario == "fault" else (c.repetitions or 1)
            out.extend((c, r) for r in range(1, reps + 1))
        return out


_SLOTS = re.compile(r"/p(\d+)s(\d+)(\.norec)?$")


def family_of(key: str) -> str:
    """The comparison a case key belongs to: `celery.postgres.defaults/drain/noop/bulk/n500/p1s10` and
    `pgqueue/drain/noop/bulk/n500/p2s5` both belong to `drain/noop/bulk/n500/slots10`."""
    rest = key.split("/", 1)[1] if "/" in key else key
    return _SLOTS.sub(lambda m: f"/slots{int(m[1]) * int(m[2])}{m[3] or ''}", rest)


def _int_field(errors: dict[str, str], name: str, value: Any, low: int, high: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        n = int(value)
        if isinstance(value, float) and value != n:
            raise TypeError
    except (TypeError, ValueError):
        errors[name] = f"must be a whole number, got {value!r}"
        return low
    if not low <= n <= high:
        errors[name] = f"must be between {low} and {high}, got {n}"
    return n


def _float_field(errors: dict[str, str], name: str, value: Any, low: float, high: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        errors[name] = f"must be a number, got {value!r}"
        return low
    if not low < x <= high:
        errors[name] = f"must be above {low:g} and at most {high:g}, got {x:g}"
    return x


def _case(errors: dict[str, str], prefix: str, d: dict[str, Any]) -> Case | None:
    e: dict[str, str] = {}
    adapter = d.get("adapter")
    if adapter not in ADAPTERS:
        e["adapter"] = f"unknown adapter {adapter!r}; use one of {', '.join(ADAPTERS)}"
    jobs = _int_field(e, "jobs", d.get("jobs", d.get("job_count")), 1, MAX_JOBS)
    workload = d.get("workload", "noop")
    if workload not in workloads.REGISTRY:
        e["workload"] = f"unknown workload {workload!r}; use one of {', '.join(BENCH_WORKLOADS)}"
    params = d.get("params") or d.get("workload_params") or {}
    if not isinstance(params, dict):
        e["params"] = f"must be an object of workload parameters, got {params!r}"
        params = {}
    for k in ("ms",):
        if k in params:
            params = {**params, k: _float_field(e, f"params.{k}", params[k], -1e-9, 3_600_000)}
    scheduling = d.get("scheduling", d.get("scheduling_mode", "bulk"))
    if scheduling not in SCHEDULING_MODES:
        e["scheduling"] = f"unknown scheduling mode {scheduling!r}; use one_by_one or bulk"
    scenario = d.get("scenario", "drain")
    if scenario not in SCENARIOS:
        e["scenario"] = f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}"
    broker = d.get("broker")
    config = d.get("celery_config")
    if adapter == "celery":
        broker = broker or "postgres"
        config = config or "defaults"
        if broker not in BROKERS:
            e["broker"] = f"unknown broker {broker!r}; use one of {', '.join(BROKERS)}"
        if config not in CONFIGURATIONS:
            e["celery_config"] = f"unknown Celery configuration {config!r}; use defaults or reliable"
    else:
        broker = config = None
    processes = _int_field(e, "processes", d.get("processes", 1), 1, 64)
    slots = _int_field(e, "slots", d.get("slots", 10), 1, MAX_SLOTS)
    if processes * slots > MAX_SLOTS and "slots" not in e:
        e["slots"] = f"processes x slots must be at most {MAX_SLOTS}, got {processes * slots}"
    rate = bursts = fault = None
    if scenario == "steady":
        rate = _float_field(e, "rate", d.get("rate", 200), 0, 100_000)
        if scheduling != "one_by_one" and d.get("scheduling") == "bulk":
            e["scheduling"] = "the steady scenario sends one job per arrival: use one_by_one"
        scheduling = "one_by_one"
    elif scenario == "burst":
        bursts = _int_field(e, "bursts", d.get("bursts", 5), 1, 1000)
    elif scenario == "fault":
        fault = d.get("fault", "kill_worker")
        if fault not in FAULTS:
            e["fault"] = f"unknown fault {fault!r}; use one of {', '.join(FAULTS)}"
    reps = d.get("repetitions")
    if reps is not None:
        reps = _int_field(e, "repetitions", reps, 1, MAX_REPETITIONS)
    recording = d.get("recording", True)
    if not isinstance(recording, bool):
        e["recording"] = f"must be true or false, got {recording!r}"
    if adapter == "celery" and recording is False:
        e["recording"] = (
            "recording off is measured on pgqueue only: the Celery side has no other completion signal"
        )
    if e:
        errors.update({f"{prefix}{k}": v for k, v in e.items()})
        return None
    return Case(
        adapter=str(adapter),
        jobs=jobs,
        workload=workload,
        params=params,
        scheduling=scheduling,
        scenario=scenario,
        broker=broker,
        celery_config=config,
        processes=processes,
        slots=slots,
        rate=rate,
        bursts=bursts,
        fault=fault,
        recording=recording,
        repetitions=reps,
    )


def _expand_matrix(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A matrix (lists per dimension) as the list of its cases: the cross product."""
    adapters = data.get("adapters") or list(ADAPTERS)
    brokers = data.get("brokers") or ["postgres"]
    configs = data.get("celery_configs") or data.get("configs") or ["defaults"]
    modes = data.get("scheduling") or data.get("modes") or ["bulk"]
    scenarios = data.get("scenarios") or ["drain"]
    cases: list[dict[str, Any]] = []
    for adapter in adapters if isinstance(adapters, list) else [adapters]:
        whos = (
            [{"broker": b, "celery_config": c} for b, c in itertools.product(brokers, configs)]
            if adapter == "celery"
            else [{}]
        )
        for who, mode, scenario in itertools.product(
            whos,
            modes if isinstance(modes, list) else [modes],
            scenarios if isinstance(scenarios, list) else [scenarios],
        ):
            case: dict[str, Any] = {
                k: data[k]
                for k in ("jobs", "workload", "params", "processes", "slots", "rate", "bursts", "fault")
                if k in data
            }
            cases.append({**case, **who, "adapter": adapter, "scheduling": mode, "scenario": scenario})
    return cases


def validate_spec(data: dict[str, Any]) -> Spec:
    """Check a spec given as a dict (JSON from the form or the command line) and return a `Spec`.

    Accepts either `{"cases": [{...}, ...], "repetitions": 5}` or a matrix
    `{"adapters": [...], "brokers": [...], "scheduling": [...], "jobs": N, "workload": ..., ...}`.
    Raises `SpecError` with one message per bad field; nothing is contacted (see `checks.preflight`).
    """
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        raise SpecError({"spec": f"must be an object, got {type(data).__name__}"})
    repetitions = _int_field(errors, "repetitions", data.get("repetitions", 5), 1, MAX_REPETITIONS)
    seed = _int_field(errors, "seed", data.get("seed", 1), 0, 2**31)
    raw_cases = data.get("cases")
    if raw_cases is None:
        for k in ("adapters", "brokers", "scheduling", "scenarios"):
            v = data.get(k)
            if v is not None and not isinstance(v, list | str):
                errors[k] = f"must be a list, got {v!r}"
        if "jobs" not in data:
            errors["jobs"] = "required: how many jobs each run enqueues"
        raw_cases = [] if errors else _expand_matrix(data)
        prefix_of = lambda i: ""  # noqa: E731 - the matrix's fields are the cases' fields
    else:
        prefix_of = lambda i: f"cases[{i}]."  # noqa: E731
    if not isinstance(raw_cases, list):
        errors["cases"] = "must be a list of case objects"
        raw_cases = []
    cases: list[Case] = []
    for i, raw in enumerate(raw_cases):
        if not isinstance(raw, dict):
            errors[f"cases[{i}]"] = "must be an object"
            continue
        c = _case(errors, prefix_of(i), raw)
        if c is not None and c not in cases:
            cases.append(c)
    if not cases and not errors:
        errors["cases"] = "the spec has no case to run"
    if errors:
        raise SpecError(errors)
    notes = data.get("notes") or []
    return Spec(tuple(cases), repetitions=repetitions, seed=seed, notes=tuple(str(n) for n in notes))


def from_dict(data: dict[str, Any]) -> Spec:
    """A `Spec` from its stored form (`Spec.to_dict()`), validated again."""
    return validate_spec(data)


def default_matrix(
    *,
    brokers: list[str],
    full: bool = False,
    pgqueue: bool = True,
    noop_jobs: int = 2000,
    sleep_jobs: int = 1000,
    sleep_ms: float = 10,
    slots: int = 10,
    steady_rate: float = 200,
    steady_seconds: float = 10,
    fault_jobs: int = 200,
    fault_ms: float = 50,
    repetitions: int = 5,
    restart_postgres: bool = False,
    overhead: bool = True,
    overhead_jobs: int = 100_000,
) -> dict[str, Any]:
    """The default matrix of `make bench` (docs/benchmark.md explains the sizes), as a spec dict."""
    configs = ["defaults", "reliable"] if full else ["defaults"]
    whos: list[dict[str, Any]] = [
        {"adapter": "celery", "broker": b, "celery_config": c} for b in brokers for c in configs
    ]
    if pgqueue:
        whos.insert(0, {"adapter": "pgqueue", "processes": 2, "slots": slots // 2 or 1})
    cases: list[dict[str, Any]] = []

    def slots_of(who: dict[str, Any]) -> dict[str, Any]:
        # Equal total slots: pgqueue as 2 processes x slots/2 threads, Celery as prefork x slots.
        if who["adapter"] == "pgqueue":
            return {"processes": 2, "slots": max(1, slots // 2)}
        return {"processes": 1, "slots": slots}

    for who in whos:
        base = {**who, **slots_of(who)}
        for mode in SCHEDULING_MODES:
            cases.append({**base, "jobs": noop_jobs, "workload": "noop", "scheduling": mode})
        cases.append(
            {
                **base,
                "jobs": sleep_jobs,
                "workload": "sleep",
                "params": {"ms": sleep_ms},
                "scheduling": "bulk",
            }
        )
        cases.append(
            {
                **base,
                "jobs": int(steady_rate * steady_seconds),
                "workload": "noop",
                "scenario": "steady",
                "rate": steady_rate,
                "scheduling": "one_by_one",
            }
        )
    if overhead and pgqueue:
        # The recording overhead: a pair of pgqueue noop drains, recording on and off, large enough that
        # the drain lasts long enough to measure (a 500-job drain ends in tens of milliseconds).
        p = {**whos[0], **slots_of(whos[0]), "jobs": overhead_jobs, "workload": "noop", "scheduling": "bulk"}
        cases.append({**p, "part": "overhead"})
        cases.append({**p, "recording": False, "part": "overhead"})
    # One fault run per adapter: Celery's on the PostgreSQL broker (the design's default) when it runs.
    fault_broker = "postgres" if "postgres" in brokers else (brokers[0] if brokers else None)
    fault_whos = ([whos[0]] if pgqueue else []) + [
        {"adapter": "celery", "broker": fault_broker, "celery_config": c} for c in configs if fault_broker
    ]
    faults = ["kill_worker"] + (["restart_postgres"] if restart_postgres else [])
    for who in fault_whos:
        for fault in faults:
            cases.append(
                {
                    **who,
                    **slots_of(who),
                    "jobs": fault_jobs,
                    "workload": "sleep",
                    "params": {"ms": fault_ms},
                    "scheduling": "bulk",
                    "scenario": "fault",
                    "fault": fault,
                }
            )
    return {"cases": cases, "repetitions": repetitions}


def with_recording(case: Case, recording: bool) -> Case:
    return replace(case, recording=recording)
