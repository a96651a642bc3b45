"""Pure logic of the web: chart descriptions, throughput from count refreshes, formatting, serializers."""

from __future__ import annotations

import datetime as dt
import math

from web import filters, results, serializers, throughput


def test_charts_from_the_reports_series_keep_every_point():
    series = {
        "run_id": 1,
        "case_key": "pgqueue/drain",
        "throughput": {"t": [0, 1, 2], "jobs_per_second": [10, 20, 15]},
        "latency_cdf": {
            "end_to_end": {"ms": [1.0, 2.0], "fraction": [0.5, 1.0]},
            "queue_wait": {"ms": [], "fraction": []},
        },
        "resources": {"pgqueue-worker": {"t": [0, 1], "cpu_s": [0.1, 0.3], "mem_mb": [40, 41]}},
    }
    charts = {c["id"]: c for c in results.charts_from_series(series)}
    assert set(charts) == {"throughput", "latency_cdf", "cpu_s", "mem_mb"}
    assert charts["throughput"]["datasets"][0]["data"] == [
        {"x": 0.0, "y": 10.0},
        {"x": 1.0, "y": 20.0},
        {"x": 2.0, "y": 15.0},
    ]
    assert [d["label"] for d in charts["latency_cdf"]["datasets"]] == [
        "end_to_end"
    ]  # empty kinds are not drawn
    assert charts["mem_mb"]["datasets"][0] == {
        "label": "pgqueue-worker",
        "data": [{"x": 0.0, "y": 40.0}, {"x": 1.0, "y": 41.0}],
    }
    assert results.charts_from_series(None) == []


def test_throughput_is_the_growth_of_finished_counts_between_refreshes():
    throughput.clear()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    throughput.observe(t0, {"a": {"completed": 100}})
    assert throughput.rates() is None  # one refresh is not a rate
    throughput.observe(t0, {"a": {"completed": 999}})  # the same refresh again is ignored
    throughput.observe(
        t0 + dt.timedelta(seconds=10), {"a": {"completed": 300, "discarded": 5}, "b": {"completed": 50}}
    )
    r = throughput.rates()
    assert r["window_seconds"] == 10.0
    assert r["per_queue"]["a"] == {"completed": 20.0}  # a discard is no throughput (an operator's may be)
    assert r["completed_per_second"] == 25.0
    throughput.observe(
        t0 + dt.timedelta(seconds=20), {"a": {"completed": 0}}
    )  # the cleaner ran: never negative
    assert throughput.rates()["per_queue"]["a"]["completed"] == 0
    throughput.clear()


def test_serializers_give_plain_json_values():
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    out = serializers.plain({"t": when, "b": b"\xff\x00", "n": math.nan, "s": {1, 2}, "d": {"x": (1, 2)}})
    assert out["t"] == "2026-01-02T03:04:05+00:00"
    assert out["n"] is None and sorted(out["s"]) == [1, 2] and out["d"] == {"x": [1, 2]}
    assert isinstance(out["b"], str)
    page = serializers.page([{"id": 5}, {"id": 4}], limit=2)
    assert page == {"items": [{"id": 5}, {"id": 4}], "next_after": 4}
    assert serializers.page([{"id": 5}], limit=2)["next_after"] is None


def test_formatting_filters():
    assert filters.fmt_num(1234567) == "1,234,567"
    assert filters.fmt_num(0.12345) == "0.12"
    assert filters.fmt_num(None) == "—"
    assert filters.fmt_time("2026-01-02T03:04:05+00:00") == "2026-01-02 03:04:05 UTC"
    assert filters.nonempty({"a": "", "b": None, "c": "x"}) == {"c": "x"}


def test_flat_figures_flattens_nested_figures_and_skips_long_series():
    flat = results.flat_figures(
        {"latency_ms": {"p50": 1.5, "p99": 9}, "series": list(range(100)), "ok": True}
    )
    assert flat == {"latency_ms.p50": 1.5, "latency_ms.p99": 9, "ok": True}


def test_counts_read_as_whole_numbers_and_timestamps_as_times():
    assert filters.fmt_figure(0.0, "") == "0"  # lost, duplicates: counts
    assert filters.fmt_figure(12345.0, "") == "12,345"
    assert filters.fmt_figure(2.5, "") == "2.5"  # a median of counts may fall between two
    assert filters.fmt_figure(0.5, "s") == "0.50"
    assert filters.fmt_figure(None, "") == "—"
    assert filters.fmt_measure(1767225600.0, "fault.at") == "2026-01-01 00:00:00 UTC"
    assert filters.fmt_measure(1767225600.0, "throughput") == "1,767,225,600"
    assert filters.fmt_measure(3.0, "audit.lost") == "3"
    assert filters.fmt_measure(0.25, "drain_seconds") == "0.25"


def test_named_figures_lead_with_the_summarys_headline_in_its_order():
    from shared.bench.report import figures as registry

    metrics = {"throughput": 1000.0, "drain_seconds": 2.0, "audit": {"lost": 0, "duplicates": 0}}
    named = results.named_figures({"metrics": metrics})
    headline = [f["figure"] for f in named if f["headline"]]
    assert headline == list(registry.SUMMARY_FIGURES)
    assert [f["headline"] for f in named] == sorted((f["headline"] for f in named), reverse=True)
    by_name = {f["figure"]: f for f in named}
    assert by_name["throughput"]["value"] == 1000.0 and by_name["throughput"]["unit"] == "jobs/s"
    assert by_name["lost"]["value"] == 0 and by_name["lost"]["unit"] == ""
    assert "wall_seconds" not in by_name  # not measured, not a headline figure: not listed


def test_overlaid_charts_hold_every_runs_series_on_one_chart_per_figure():
    a = [
        {
            "id": "throughput",
            "title": "T",
            "x_label": "s",
            "y_label": "jobs/s",
            "datasets": [{"label": "jobs/s", "data": [{"x": 0, "y": 1}]}],
        }
    ]
    b = [
        {
            "id": "throughput",
            "title": "T",
            "x_label": "s",
            "y_label": "jobs/s",
            "datasets": [{"label": "jobs/s", "data": [{"x": 0, "y": 2}]}],
        },
        {"id": "latency_cdf", "title": "L", "datasets": [{"label": "end_to_end", "data": []}]},
    ]
    charts = results.overlay([(1, a), (2, b)])
    assert [c["id"] for c in charts] == ["throughput", "latency_cdf"]
    assert [d["label"] for d in charts[0]["datasets"]] == ["run 1: jobs/s", "run 2: jobs/s"]
    assert [d["data"][0]["y"] for d in charts[0]["datasets"]] == [1, 2]
