"""What an experiment runs, as pydantic models: one validation for the command line, the web form and the
API, and the JSON schema of the API's body (docs/benchmark.md, "Experiments, cases and runs").

A *spec* (`Spec`) is a list of cases (`Case`, `shared.bench.case`) and a number of interleaved repetitions.
It arrives either as its cases or as a *matrix* (`Matrix`, `shared.bench.matrix`: lists per dimension,
expanded to their cross product). `validate_spec(dict)` is the one entry point; it raises `SpecError`, whose
`.errors` maps each bad field to one message (`shared.bench.spec_errors`). This module is where the rest of
the harness, the web and the tests take these names from.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bench import terms
from shared.bench.case import Case, Count, family_of, who_of
from shared.bench.matrix import Matrix, option_keys
from shared.bench.spec_errors import SpecError, messages

__all__ = [
    "Case",
    "Matrix",
    "Spec",
    "SpecError",
    "family_of",
    "request_schema",
    "validate_spec",
    "who_of",
]


class Spec(BaseModel):
    """A validated experiment: its cases and how many interleaved repetitions each gets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cases: tuple[Case, ...] = Field(min_length=1)
    repetitions: Count = Field(
        5, ge=1, le=terms.MAX_REPETITIONS, description="interleaved repetitions per case"
    )
    seed: Count = Field(1, ge=0, le=2**31)
    notes: tuple[str, ...] = ()

    @field_validator("cases")
    @classmethod
    def _distinct(cls, v: tuple[Case, ...]) -> tuple[Case, ...]:
        out: list[Case] = []
        for c in v:
            if c not in out:
                out.append(c)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

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


def validate_spec(data: Any) -> Spec:
    """Check a spec given as a dict (JSON from the form, the API or the command line) and return a `Spec`.

    Accepts either `{"cases": [{...}, ...], "repetitions": 5}` or a matrix
    `{"adapters": [...], "brokers": [...], "scheduling": [...], "jobs": N, "workload": ..., ...}`.
    Raises `SpecError` with one message per bad field; nothing is contacted.
    """
    if not isinstance(data, dict):
        raise SpecError({"spec": f"must be an object, got {type(data).__name__}"})
    if "cases" in data:
        try:
            return Spec.model_validate(data)
        except pydantic.ValidationError as exc:
            raise SpecError(messages(exc)) from None
    try:
        matrix = Matrix.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(messages(exc)) from None
    # A matrix's fields are its cases' fields: an error in case i's `jobs` is the matrix's `jobs`.
    rename = {f"options.{name}": key for key, name in option_keys().items()}
    rename.update({f: f for f in Case.model_fields})
    rename.update({"scheduling": "scheduling", "scenario": "scenarios", "adapter": "adapters"})
    spec_data = {
        "cases": matrix.cases(),
        "repetitions": matrix.repetitions,
        "seed": matrix.seed,
        "notes": matrix.notes,
    }
    try:
        return Spec.model_validate(spec_data)
    except pydantic.ValidationError as exc:
        raise SpecError(messages(exc, rename)) from None


def request_schema() -> dict[str, Any]:
    """The JSON schema of an experiment as the API takes it: its cases, or a matrix."""
    return pydantic.TypeAdapter(Spec | Matrix).json_schema(ref_template="#/components/schemas/{model}")
