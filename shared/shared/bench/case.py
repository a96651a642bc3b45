"""One case of an experiment, as a pydantic model: the combination a run measures, its checks, and the names
it goes by in every table (docs/benchmark.md, "Experiments, cases and runs").

A *case* (`Case`) is one combination of adapter (and its variant options), job count, scheduling mode,
workload, scenario, worker processes and slots; each repetition of it is one run. Its `key` names it in the
rows and the report; its `family` is the comparison it belongs to. `shared.bench.spec` gathers cases into a
spec and is where callers take them from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator
from pydantic_core import PydanticCustomError

from shared import workloads
from shared.bench import adapters, terms

WorkersStart = Literal["held", "before_enqueue", "after_enqueue"]
"""When a run's workers consume (docs/benchmark.md, "Drain means drain"): `held`, the default of a drain,
running but stopped while the batch is enqueued and released once it is all in the queue; `after_enqueue`,
started once it is all in the queue (start-up reported apart); `before_enqueue`, consuming while the harness
enqueues (the `.overlap` drain, and every other scenario)."""


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode takes True as 1; a count given as true/false is a mistake.
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value!r}")
    return value


Count = Annotated[int, BeforeValidator(_not_bool)]


class Case(BaseModel):
    """One combination to measure; each repetition of it is one `BenchmarkRun`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: str = Field(description="the contender: " + ", ".join(f"{n}" for n in adapters.NAMES))
    options: dict[str, str] = Field(
        default_factory=dict,
        description="the adapter's variant: "
        + "; ".join(
            f"{a.name}: " + ", ".join(f"{o.name} ({'|'.join(o.choices)})" for o in a.options)
            for a in adapters.REGISTRY.values()
            if a.options
        ),
    )
    jobs: Count = Field(ge=1, le=terms.MAX_JOBS, description="jobs each run enqueues")
    workload: str = "noop"
    params: dict[str, Any] = Field(
        default_factory=dict, description="the workload's parameters, e.g. {ms: 10}"
    )
    scenario: terms.Scenario = "drain"
    scheduling: terms.SchedulingMode = "bulk"
    processes: Count = Field(1, ge=1, le=terms.MAX_PROCESSES)
    slots: Count = Field(10, ge=1, le=terms.MAX_SLOTS, description="slots per process")
    rate: float | None = Field(None, gt=0, le=terms.MAX_RATE, description="steady: arrivals per second")
    # The bounds sit on the integer, before its validator: a bound on `Count | None` reaches the JSON
    # schema as an unknown keyword (`ge`), which the API's schema readers ignore.
    bursts: Annotated[int, Field(ge=1, le=terms.MAX_BURSTS), BeforeValidator(_not_bool)] | None = Field(
        None, description="burst: equal bursts, 1 s apart"
    )
    fault: terms.Fault | None = None
    recording: StrictBool = True
    repetitions: Annotated[int, Field(ge=1, le=terms.MAX_REPETITIONS), BeforeValidator(_not_bool)] | None = (
        Field(None, description="overrides the spec's repetitions")
    )
    p99_bound_ms: float | None = Field(
        None, gt=0, le=3_600_000, description="sweep: the p99 bound of its verdict (default 50 ms)"
    )
    min_seconds: float | None = Field(
        None,
        gt=0,
        le=600,
        description="drain: size each run from a short probe of `jobs` jobs so that it lasts about this long",
    )
    workers_start: WorkersStart = Field(
        "before_enqueue", description="drain: held (the default), after_enqueue or before_enqueue (overlap)"
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        """Older names, the adapter's options given at the top (`broker`, `celery_config`), and the
        fields each scenario implies (a steady run sends one job per arrival)."""
        if not isinstance(data, dict):
            return data
        d = dict(data)
        for old, new in (
            ("job_count", "jobs"),
            ("workload_params", "params"),
            ("scheduling_mode", "scheduling"),
        ):
            if old in d and new not in d:
                d[new] = d.pop(old)
        options = (
            dict(d.get("options") or {}) if isinstance(d.get("options") or {}, dict) else d.get("options")
        )
        name = d.get("adapter")
        adapter = adapters.REGISTRY.get(name) if isinstance(name, str) else None
        for a in adapters.REGISTRY.values():
            for o in a.options:
                for name in (o.name, *o.aliases):
                    if name in d and name not in cls.model_fields:
                        value = d.pop(name)
                        if value is not None and a is adapter and isinstance(options, dict):
                            options.setdefault(o.name, value)
        if adapter is not None and isinstance(options, dict):
            options = {**adapter.resolve(options), **options}
        d["options"] = options
        scenario = d.get("scenario", "drain")
        if scenario in ("steady", "sweep"):
            if d.get("scheduling") != "bulk":
                d["scheduling"] = "one_by_one"
            d.setdefault("rate", 200)
        else:
            d["rate"] = None
        if scenario == "sweep":
            # One run per rate, in the order given, so that a saturated rate stops the higher ones.
            d.setdefault("repetitions", 1)
            d.setdefault("p99_bound_ms", terms.P99_BOUND_MS)
        else:
            d["p99_bound_ms"] = None
        if scenario == "drain":
            d.setdefault("workers_start", "held")
        d["bursts"] = d.get("bursts", 5) if scenario == "burst" else None
        d["fault"] = (d.get("fault") or "kill_worker") if scenario == "fault" else None
        return d

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, v: str) -> str:
        return _one_of(v, adapters.NAMES, "adapter")

    @field_validator("workload")
    @classmethod
    def _known_workload(cls, v: str) -> str:
        return _one_of(v, sorted(workloads.REGISTRY), "workload")

    @field_validator("params")
    @classmethod
    def _ms_in_range(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "ms" in v:
            try:
                ms = float(v["ms"])
            except (TypeError, ValueError):
                raise ValueError(f"ms must be a number, got {v['ms']!r}") from None
            if isinstance(v["ms"], bool) or not 0 <= ms <= terms.MAX_WORKLOAD_MS:
                raise ValueError(f"ms must be between 0 and {terms.MAX_WORKLOAD_MS:g}, got {v['ms']!r}")
            v = {**v, "ms": ms}
        return v

    @field_validator("scheduling")
    @classmethod
    def _steady_sends_one_by_one(cls, v: str, info: pydantic.ValidationInfo) -> str:
        if info.data.get("scenario") in ("steady", "sweep") and v != "one_by_one":
            raise ValueError(
                f"the {info.data['scenario']} scenario sends one job per arrival: use one_by_one"
            )
        return v

    @field_validator("workers_start")
    @classmethod
    def _held_only_drains(cls, v: str, info: pydantic.ValidationInfo) -> str:
        if v == "held" and info.data.get("scenario") not in (None, "drain"):
            raise ValueError("only a drain's workers are held while it enqueues")
        return v

    @field_validator("min_seconds")
    @classmethod
    def _sized_only_drains(cls, v: float | None, info: pydantic.ValidationInfo) -> float | None:
        if v is not None and info.data.get("scenario") not in (None, "drain"):
            raise ValueError("only a drain is sized by a time budget")
        return v

    @field_validator("slots")
    @classmethod
    def _total_slots(cls, v: int, info: pydantic.ValidationInfo) -> int:
        total = v * int(info.data.get("processes") or 1)
        if total > terms.MAX_SLOTS:
            raise ValueError(f"processes x slots must be at most {terms.MAX_SLOTS}, got {total}")
        return v

    @pydantic.model_validator(mode="after")
    def _adapter_rules(self) -> Case:
        """The adapter's options and rules; the first broken one is reported with its field."""
        adapter = adapters.get(self.adapter)
        known = {o.name: o for o in adapter.options}
        errors: dict[str, str] = {}
        for name, value in self.options.items():
            if name not in known:
                errors[f"options.{name}"] = f"{adapter.name} has no option {name!r}"
            else:
                try:
                    _one_of(value, known[name].choices, name)
                except ValueError as exc:
                    errors[f"options.{name}"] = str(exc)
        errors = errors or adapter.check_case(self)
        if errors:
            field, message = next(iter(errors.items()))
            raise PydanticCustomError(
                "adapter_rule", "{field}: {message}", {"field": field, "message": message}
            )
        return self

    # ---- names ----------------------------------------------------------------------------------

    @property
    def who(self) -> str:
        """The adapter's variant as result rows name it: `pgqueue`, `celery.redis.reliable`, ..."""
        return adapters.get(self.adapter).label(self.options)

    @property
    def key(self) -> str:
        """A readable, stable identifier of the case, shared by its repetitions."""
        work = self.workload + "".join(f".{k}{v}" for k, v in sorted(self.params.items()))
        extra = ""
        if self.scenario in ("steady", "sweep"):
            extra = f"@{self.rate:g}/s"
        elif self.scenario == "burst":
            extra = f"x{self.bursts}"
        elif self.scenario == "fault":
            extra = f".{self.fault}"
        gate = {
            "after_enqueue": ".gated",
            "before_enqueue": ".overlap" if self.scenario == "drain" else "",
        }.get(self.workers_start, "")
        rec = "" if self.recording else ".norec"
        # A sized drain is named by its time budget: its size is each adapter's own, from its probe.
        size = f"t{self.min_seconds:g}s" if self.min_seconds else f"n{self.jobs}"
        return (
            f"{self.who}/{self.scenario}{extra}{gate}/{work}/{self.scheduling}/{size}"
            f"/p{self.processes}s{self.slots}{rec}"
        )

    @property
    def family(self) -> str:
        """The comparison this case belongs to: everything but the adapter and its variant, with total
        slots instead of processes x slots (every adapter gets the same total)."""
        return family_of(self.key)

    @property
    def total_slots(self) -> int:
        return self.processes * self.slots

    def slot_mapping(self) -> str:
        """One sentence saying how the equal slots map to the adapter's execution model."""
        return adapters.get(self.adapter).slot_mapping(self)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


_SLOTS = re.compile(r"/p(\d+)s(\d+)(\.norec)?$")


def _one_of(value: str, known: Sequence[str], what: str) -> str:
    """`value` if it is one of `known`, else the error every spec field of a name gives."""
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(known)}")
    return value


def family_of(key: str) -> str:
    """The comparison a case key belongs to: `celery.postgres.defaults/drain/noop/bulk/n500/p1s10` and
    `pgqueue/drain/noop/bulk/n500/p2s5` both belong to `drain/noop/bulk/n500/slots10`."""
    rest = key.split("/", 1)[1] if "/" in key else key
    return _SLOTS.sub(lambda m: f"/slots{int(m[1]) * int(m[2])}{m[3] or ''}", rest)


def who_of(key: str) -> str:
    """The adapter's variant a case key names (its first part)."""
    return key.split("/", 1)[0]
