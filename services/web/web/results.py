"""Reading experiments and runs (the harness's tables) for the pages and the API.

Every read goes through the harness's named queries (`shared.bench.store`, `shared/bench/sql/queries.sql`),
the queries the harness writes and the report reads these tables with, run on the psycopg connection under
the page's admin transaction (its statement timeout applies). Listings are keyset-paginated by id, newest
first. Figures and series come from the benchmark library's report module when it is installed; otherwise
the run rows' own `metrics` are what there is.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from shared.bench import store
from web import database, serializers


def list_experiments(
    conn: sa.Connection, *, after: int | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    rows = store.experiments(database.raw(conn), after=after, limit=limit)
    return [serializers.experiment(r) for r in rows]


def get_experiment(conn: sa.Connection, experiment_id: int) -> dict[str, Any] | None:
    row = store.experiment(database.raw(conn), experiment_id)
    return serializers.experiment(row) if row else None


def list_runs(
    conn: sa.Connection,
    *,
    experiment_id: int | None = None,
    case_key: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    rows = store.runs(
        database.raw(conn),
        experiment_id=experiment_id,
        case_key=case_key,
        after=after,
        limit=limit,
        newest_first=True,
    )
    return [serializers.run(r) for r in rows]


def get_run(conn: sa.Connection, run_id: int) -> dict[str, Any] | None:
    runs = get_runs(conn, [run_id])
    return runs[0] if runs else None


def get_runs(conn: sa.Connection, run_ids: list[int]) -> list[dict[str, Any]]:
    """The runs of `run_ids` that exist, in that order (an id past bigint names none)."""
    possible = [i for i in run_ids if 0 < i < 2**63]
    rows = store.runs(database.raw(conn), ids=possible) if possible else []
    by_id = {r["id"]: serializers.run(r) for r in rows}
    return [by_id[i] for i in run_ids if i in by_id]


def cases_of(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by case key, repetitions in order."""
    cases: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(runs, key=lambda r: (r["case_key"], r["repetition"], r["id"])):
        cases.setdefault(r["case_key"], []).append(r)
    return cases


def flat_figures(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict of figures as `a.b.c -> value` rows for a table (lists of numbers are skipped)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flat_figures(v, key))
            elif isinstance(v, list):
                if v and all(isinstance(x, (int, float, str, bool)) or x is None for x in v) and len(v) <= 8:
                    out[key] = ", ".join("—" if x is None else str(x) for x in v)
            else:
                out[key] = v
    return out


def _with_report(fn_name: str, *args: Any) -> Any:
    """Call the report module inside an admin transaction (statement timeout) on its psycopg connection."""
    from shared.bench import report  # imported on first use: it brings matplotlib

    with database.admin_conn() as conn:
        try:
            return serializers.plain(getattr(report, fn_name)(*args, conn=database.raw(conn)))
        except LookupError:
            return None


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """Every figure of a run: the report's summary when the library is there, else the stored metrics."""
    summary = _with_report("run_summary", run["id"])
    if summary is not None:
        summary.pop("environment", None)  # shown on its own
        return summary
    return serializers.plain(run.get("metrics") or {})


def headline(experiment_id: int) -> dict[str, Any] | None:
    """The experiment's verdicts, as at the top of its `summary.md`; None without the library or runs."""
    return _with_report("headline", experiment_id)


def run_series(run_id: int) -> dict[str, Any] | None:
    """The run's time series and distributions, as the report draws them; None without the library."""
    return _with_report("run_series", run_id)


def case_summary(experiment_id: int, case_key: str) -> dict[str, Any] | None:
    """A case's repetitions and, per figure, the median with its bootstrap 95% interval."""
    return _with_report("case_summary", experiment_id, case_key)


def _points(xs: Any, ys: Any) -> list[dict[str, float]] | None:
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        return None
    try:
        return [
            {"x": float(x), "y": float(y)}
            for x, y in zip(xs, ys, strict=True)
            if x is not None and y is not None
        ]
    except (TypeError, ValueError):
        return None


def _chart(
    cid: str, title: str, x_label: str, y_label: str, datasets: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"id": cid, "title": title, "x_label": x_label, "y_label": y_label, "datasets": datasets}


def charts_from_series(series: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chart descriptions (title, axes, datasets of {x, y} points) drawn by the pages with Chart.js.

    The pages draw exactly these points; the browser test compares them with the API's series. The
    report's series give four charts, as its PNG plots: throughput over time, the latency CDF of each
    latency kind, and CPU and memory per service. Any other entry holding an x array and y arrays
    becomes a chart of its own.
    """
    charts: list[dict[str, Any]] = []
    if not isinstance(series, dict):
        return charts
    known = {"throughput", "latency_cdf", "resources"}
    tp = series.get("throughput")
    if isinstance(tp, dict):
        pts = _points(tp.get("t"), tp.get("jobs_per_second"))
        if pts:
            charts.append(
                _chart(
                    "throughput",
                    "Throughput over time",
                    "seconds",
                    "jobs/s",
                    [{"label": "jobs/s", "data": pts}],
                )
            )
    cdf = series.get("latency_cdf")
    if isinstance(cdf, dict):
        ds = []
        for kind, v in cdf.items():
            pts = _points(v.get("ms"), v.get("fraction")) if isinstance(v, dict) else None
            if pts:
                ds.append({"label": kind, "data": pts})
        if ds:
            charts.append(_chart("latency_cdf", "Latency CDF", "milliseconds", "fraction of jobs", ds))
    res = series.get("resources")
    if isinstance(res, dict):
        for key, title, unit in (
            ("cpu_s", "CPU per service", "CPU seconds"),
            ("mem_mb", "Memory per service", "MB"),
        ):
            ds = []
            for svc, v in res.items():
                pts = _points(v.get("t"), v.get(key)) if isinstance(v, dict) else None
                if pts:
                    ds.append({"label": svc, "data": pts})
            if ds:
                charts.append(_chart(key, title, "seconds", unit, ds))
    for name, value in series.items():
        if name in known:
            continue
        if not isinstance(value, dict):
            continue
        x_key = next((k for k in ("t", "x", "time", "seconds", "latency_ms", "value") if k in value), None)
        if x_key is None:
            continue
        datasets = []
        for key, ys in value.items():
            if key == x_key or key.endswith("_label") or key in {"title", "unit", "kind"}:
                continue
            pts = _points(value[x_key], ys)
            if pts is not None:
                datasets.append({"label": key, "data": pts})
            elif isinstance(ys, dict):
                # nested: {"queue_wait": [..], "execution": [..]} under one x array
                for sub, sub_ys in ys.items():
                    pts = _points(value[x_key], sub_ys)
                    if pts is not None:
                        datasets.append({"label": f"{key}.{sub}", "data": pts})
        if datasets:
            charts.append(
                {
                    "id": name,
                    "title": value.get("title") or name.replace("_", " "),
                    "x_label": value.get("x_label") or x_key,
                    "y_label": value.get("y_label") or value.get("unit") or "",
                    "datasets": datasets,
                }
            )
    return charts


def overlay(per_run: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One chart per figure for several runs: each run's datasets on the same chart (shared axes),
    labelled with the run, in the order of the figures' first appearance."""
    out: dict[str, dict[str, Any]] = {}
    for run_id, charts in per_run:
        for c in charts:
            chart = out.setdefault(c["id"], {**c, "datasets": []})
            for d in c["datasets"]:
                chart["datasets"].append({**d, "label": f"run {run_id}: {d['label']}"})
    return list(out.values())


def named_figures(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's figures as `summary.md` names them (the report's figure registry): the headline ones
    first, in the summary's order, then the others it measured; each with its unit and direction."""
    from shared.bench.report import figures as registry

    values = registry.figures_of(run.get("metrics") or {})
    meta = {name: (hib, unit) for name, _path, hib, unit in registry.FIGURES}
    order = [*registry.SUMMARY_FIGURES, *(n for n in meta if n not in registry.SUMMARY_FIGURES)]
    return [
        {
            "figure": name,
            "value": values.get(name),
            "unit": meta[name][1],
            "higher_is_better": meta[name][0],
            "headline": name in registry.SUMMARY_FIGURES,
        }
        for name in order
        if name in meta and (name in registry.SUMMARY_FIGURES or values.get(name) is not None)
    ]


def compare(run_ids: list[int], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Side-by-side named figures of 2 or more runs (headline first); the report's comparison of their
    cases (median, interval, verdict) when the library is there."""
    per_run = [named_figures(r) for r in runs]
    rows = []
    for i, first in enumerate(per_run[0] if per_run else []):
        values = [figs[i]["value"] for figs in per_run]
        if first["headline"] or any(v is not None for v in values):
            rows.append({"figure": first["figure"], "unit": first["unit"], "values": values})
    out: dict[str, Any] = {"run_ids": run_ids, "runs": runs, "rows": rows}
    report = _with_report("compare", run_ids)
    if report is not None:
        out["report"] = report
    return out
