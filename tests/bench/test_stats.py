"""Unit: percentiles, the bootstrap interval and the comparison rule."""

from __future__ import annotations

import pytest

from shared.bench import stats as st


def test_percentile_interpolates_between_closest_ranks():
    assert st.percentile([1, 2, 3, 4], 50) == 2.5
    assert st.percentile([1, 2, 3, 4], 0) == 1
    assert st.percentile([1, 2, 3, 4], 100) == 4
    assert st.percentile([10], 99.9) == 10
    assert st.percentile([], 50) is None
    values = list(range(1, 1001))
    assert st.percentile(values, 99) == pytest.approx(990.01)
    assert st.percentile(values, 99.9) == pytest.approx(999.001)
    with pytest.raises(ValueError):
        st.percentile([1], 101)


def test_percentiles_sorts_and_names_each_level():
    p = st.percentiles([5, 1, 4, 2, 3])
    assert p == {
        "p50": 3.0,
        "p95": pytest.approx(4.8),
        "p99": pytest.approx(4.96),
        "p99.9": pytest.approx(4.996),
    }


def test_bootstrap_interval_contains_the_median_and_is_reproducible():
    values = [10.0, 11.0, 12.0, 13.0, 30.0]
    a = st.bootstrap_ci(values, seed=7)
    assert a == st.bootstrap_ci(values, seed=7)
    assert a.median == 12.0 and a.n == 5
    assert a.low <= a.median <= a.high
    assert 10.0 <= a.low and a.high <= 30.0
    # Identical values: a zero-width interval; one value: itself; none: nothing.
    same = st.bootstrap_ci([4.0] * 6)
    assert (same.low, same.high) == (4.0, 4.0)
    assert st.bootstrap_ci([3.0]).to_dict() == {"median": 3.0, "ci_low": 3.0, "ci_high": 3.0, "n": 1}
    assert st.bootstrap_ci([]).median is None


def test_bootstrap_interval_narrows_with_less_spread():
    wide = st.bootstrap_ci([1, 5, 9, 13, 17, 21, 25])
    narrow = st.bootstrap_ci([12, 12.5, 13, 13.5, 14, 14.5, 15])
    assert (narrow.high - narrow.low) < (wide.high - wide.low)


def test_verdict_names_a_winner_only_without_overlap():
    fast = st.Estimate(1000.0, 950.0, 1050.0, 5)
    slow = st.Estimate(500.0, 480.0, 520.0, 5)
    near = st.Estimate(990.0, 900.0, 1010.0, 5)
    v = st.verdict({"pgqueue": fast, "celery": slow}, higher_is_better=True)
    assert v["winner"] == "pgqueue" and v["ratio"] == pytest.approx(2.0)
    v = st.verdict({"pgqueue": fast, "celery": near}, higher_is_better=True)
    assert v["winner"] is None and v["verdict"] == st.NO_CLEAR_DIFFERENCE
    # Lower is better (latency): the smaller median wins, the ratio stays >= 1.
    v = st.verdict(
        {"a": st.Estimate(2.0, 1.8, 2.2, 5), "b": st.Estimate(8.0, 7.0, 9.0, 5)}, higher_is_better=False
    )
    assert v["winner"] == "a" and v["ratio"] == pytest.approx(4.0)
    assert st.verdict({"a": fast}, True)["winner"] is None


def test_a_single_repetition_names_no_winner():
    v = st.verdict({"a": st.bootstrap_ci([100.0]), "b": st.bootstrap_ci([1.0])}, higher_is_better=True)
    assert v["winner"] is None and v["verdict"].startswith(st.NO_CLEAR_DIFFERENCE)


def _case(key, recording, walls):
    return {
        "case_key": key,
        "recording": recording,
        "repetitions": [{"repetition": i + 1, "wall_seconds": w} for i, w in enumerate(walls)],
        "estimates": {"wall_seconds": {"median": st.median(walls)}},
    }


def test_recording_overhead_is_taken_pair_by_pair():
    from shared.bench.report import figures

    # The machine slows down round by round; each round's pair meets the same speed. Medians of each
    # side would mix rounds (4.0 against 3.0: +33 %); the pairs say +5 % every time.
    off = [1.0, 2.0, 3.0, 4.0, 5.0]
    on = [x * 1.05 for x in off]
    [o] = figures.overhead([_case("k", True, on), _case("k.norec", False, off), _case("other", True, on)])
    assert o["pairs"] == 5 and o["per_round_percent"] == [5.0] * 5
    assert o["overhead_percent"] == 5.0 and o["ci_low"] == o["ci_high"] == 5.0
    assert not o["no_clear_difference"]
    # pairs that straddle 0 tell no clear difference; a round missing on one side is left out
    [o] = figures.overhead(
        [_case("k", True, [1.1, 0.9, 1.05, 0.95]), _case("k.norec", False, [1.0, 1.0, 1.0])]
    )
    assert o["pairs"] == 3 and o["no_clear_difference"]


def test_each_adapters_recording_pair_gets_a_line_of_its_own():
    from shared.bench.report import figures

    keys = {
        "pgqueue": "pgqueue/drain.overlap/noop/bulk/n100000/p2s5",
        "celery": "celery.postgres.defaults/drain.overlap/noop/bulk/n1500/p1s10",
    }
    cases = [_case(k, True, [1.1, 2.2]) for k in keys.values()]
    cases += [_case(k + ".norec", False, [1.0, 2.0]) for k in keys.values()]
    lines = figures.overhead(cases)
    assert sorted(o["case_key"] for o in lines) == sorted(keys.values())
    assert all(o["overhead_percent"] == 10.0 for o in lines)


def test_a_percentile_needs_a_hundred_samples_beyond_it():
    # p50 needs 200 samples, p99 10,000, p99.9 100,000 (docs/benchmark.md, "Statistics").
    assert st.enough_for(200, 50) and not st.enough_for(199, 50)
    assert st.enough_for(10_000, 99) and not st.enough_for(9_999, 99)
    assert not st.enough_for(99_999, 99.9)
    values = [float(i) for i in range(10_000)]
    p = st.percentiles(values, tail=st.MIN_TAIL)
    assert p["p50"] is not None and p["p99"] is not None and p["p99.9"] is None
    assert st.percentiles(values[:199], tail=st.MIN_TAIL)["p50"] is None
    # Without the rule (the web's page timings), every percentile is given.
    assert st.percentiles(values[:10])["p99.9"] is not None


def test_the_latency_summary_and_the_comparison_say_n_too_small():
    from shared.bench import metrics
    from shared.bench.report import figures

    summary = metrics.latency_summary({"end_to_end": [1.0] * 250})
    assert summary["end_to_end"]["n"] == 250
    assert summary["end_to_end"]["p50"] == 1.0 and summary["end_to_end"]["p99"] is None

    def case(who: str, p50: float | None) -> dict:
        est = {"throughput": {"median": 10.0, "ci_low": 9.0, "ci_high": 11.0, "n": 3}}
        if p50 is not None:
            est["e2e_p50_ms"] = {"median": p50, "ci_low": p50, "ci_high": p50, "n": 3}
        return {"who": who, "case_key": f"{who}/drain/noop/bulk/n500/p1s10", "estimates": est}

    rows = {r["figure"]: r for r in figures.compare_cases([case("a", 2.0), case("b", None)])["rows"]}
    assert rows["e2e_p50_ms"]["results"]["b"]["note"] == st.N_TOO_SMALL
    assert rows["e2e_p50_ms"]["winner"] is None  # one figure cannot win against "n too small"


def test_a_sized_comparison_compares_rates_only():
    from shared.bench.report import figures

    def case(who: str) -> dict:
        est = {
            name: {"median": 5.0, "ci_low": 4.0, "ci_high": 6.0, "n": 3}
            for name in ("throughput", "drain_seconds", "e2e_p50_ms")
        }
        return {"who": who, "case_key": f"{who}/drain/noop/bulk/t2s/p1s10", "estimates": est}

    comp = figures.compare_cases([case("a"), case("b")])
    assert comp["sized"] and [r["figure"] for r in comp["rows"]] == ["throughput"]
