"""An experiment given as lists per dimension (`Matrix`), the shape `make bench`'s options, the web form and
the API's short form take; `Matrix.cases()` is their cross product, each a dict for `Case`."""

from __future__ import annotations

import itertools
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from shared.bench import adapters, terms
from shared.bench.case import Case, Count


class Matrix(BaseModel):
    """A spec given as lists per dimension; its cases are their cross product. An adapter's options take
    lists under the option's matrix key (`brokers`, `configs`, `pools`)."""

    model_config = ConfigDict(extra="allow")

    adapters: list[str] = Field(default_factory=lambda: list(adapters.NAMES))
    scheduling: list[terms.SchedulingMode] = Field(
        default_factory=lambda: list[terms.SchedulingMode](["bulk"])
    )
    scenarios: list[terms.Scenario] = Field(default_factory=lambda: list[terms.Scenario](["drain"]))
    jobs: Count = Field(ge=1, le=terms.MAX_JOBS, description="jobs each run enqueues")
    workload: str = "noop"
    params: dict[str, Any] = Field(default_factory=dict)
    processes: Count = 1
    slots: Count = 10
    rate: float | None = None
    bursts: Count | None = None
    fault: terms.Fault | None = None
    repetitions: Count = Field(5, ge=1, le=terms.MAX_REPETITIONS)
    seed: Count = Field(1, ge=0, le=2**31)
    notes: list[str] = Field(default_factory=list)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "modes" in data and "scheduling" not in data:
                data["scheduling"] = data.pop("modes")
            for k in ("adapters", "scheduling", "scenarios"):
                if isinstance(data.get(k), str):
                    data[k] = [data[k]]
        return data

    @pydantic.model_validator(mode="after")
    def _known_keys(self) -> Matrix:
        keys = option_keys()
        unknown = [k for k in (self.model_extra or {}) if k not in keys]
        if unknown:
            raise PydanticCustomError(
                "adapter_rule", "{field}: {message}", {"field": unknown[0], "message": "unknown field"}
            )
        return self

    def cases(self) -> list[dict[str, Any]]:
        """The cases of the matrix, as dicts for `Case`."""
        shared = {
            k: v
            for k, v in self.model_dump(
                exclude={"adapters", "scheduling", "scenarios", "repetitions", "seed", "notes"}
            ).items()
            if v is not None and k in Case.model_fields
        }
        extra = self.model_extra or {}
        out: list[dict[str, Any]] = []
        for name in self.adapters:
            adapter = adapters.REGISTRY.get(name)
            variants: list[dict[str, str]] = [{}]
            if adapter is not None:
                dims = []
                for o in adapter.options:
                    raw = next((extra[k] for k in (o.matrix_key, *o.aliases) if extra.get(k)), None)
                    values = raw if isinstance(raw, list) else [raw] if raw else [o.default]
                    dims.append([(o.name, v) for v in values])
                variants = [dict(combo) for combo in itertools.product(*dims)]
            for variant, mode, scenario in itertools.product(variants, self.scheduling, self.scenarios):
                out.append(
                    {**shared, "adapter": name, "options": variant, "scheduling": mode, "scenario": scenario}
                )
        return out


def option_keys() -> dict[str, str]:
    """Matrix keys of every adapter's options -> the option's name."""
    return {
        k: o.name for a in adapters.REGISTRY.values() for o in a.options for k in (o.matrix_key, *o.aliases)
    }
