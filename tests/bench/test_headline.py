"""The headline of a report: significant verdicts with their ratio, the unclear ones, the sweep's rates."""

from __future__ import annotations

from shared.bench import stats, terms
from shared.bench.report import figures, markdown


def _est(median: float, low: float, high: float) -> dict:
    return {"median": median, "ci_low": low, "ci_high": high, "n": 5}


def _case(who: str, throughput: dict, p99: dict) -> dict:
    return {
        "who": who,
        "case_key": f"{who}/drain/noop/bulk/n500/p1s10",
        "estimates": {"throughput": throughput, "e2e_p99_ms": p99},
    }


def test_the_headline_names_the_winner_its_ratio_and_the_unclear_rows():
    comp = figures.compare_cases(
        [
            _case("a", _est(1000, 900, 1100), _est(10, 5, 20)),
            _case("b", _est(100, 90, 110), _est(12, 6, 22)),
        ]
    )
    h = figures.headline({"drain/noop/bulk/n500/slots10": comp}, [])
    (sentence,) = h["significant"]
    assert sentence.startswith("**a** has the higher drain throughput")
    assert "10.00x the runner-up b" in sentence and "(intervals give 8.18-12.22x)" in sentence
    assert h["no_clear_difference"] == ["end-to-end p99, drain/noop/bulk/n500/slots10"]


def test_the_sweep_verdict_is_the_highest_sustained_rate_under_the_bound():
    def run(rate: float, p99: float | None, saturation: str | None, status: str = "completed") -> dict:
        return {
            "scenario": "sweep",
            "case_key": f"q/sweep@{rate:g}/s/noop/one_by_one/n10000/p1s10",
            "status": status,
            "error": None,
            "metrics": {
                "sweep": {"offered_rate": rate, "saturation": saturation, "p99_bound_ms": 50.0},
                "latency_ms": {"end_to_end": {"p50": 1.0, "p99": p99, "p99.9": None, "n": 10_000}},
            }
            if status == "completed"
            else None,
        }

    runs = [
        run(100, 3.0, None),
        run(300, 60.0, None),
        run(1000, 4.0, "queue"),
        run(3000, None, None, "cancelled"),
    ]
    (line,) = figures.sweep(runs)
    assert [p["status"] for p in line["points"]] == ["sustained", "sustained", "queue", "cancelled"]
    # 300/s was sustained but its p99 is over 50 ms; 1,000/s saturated: 100/s is the verdict
    assert line["highest_rate_under_bound"] == 100
    assert "sustains **100 jobs/s** with p99 under 50 ms" in figures.headline({}, [line])["sweep"][0]


def test_a_short_sweep_bounds_the_p95_its_jobs_carry_and_says_so():
    # 2,000 jobs per rate leave 100 samples beyond the p95 and 20 beyond the p99: the verdict bounds the p95
    assert stats.highest_carried(2_000, terms.SWEEP_PERCENTILES) == "p95"
    assert stats.highest_carried(10_000, terms.SWEEP_PERCENTILES) == "p99"
    assert stats.highest_carried(500, terms.SWEEP_PERCENTILES) == "p95"  # too few for either: "n too small"

    def run(rate: float, p95: float | None, saturation: str | None) -> dict:
        point = {
            "offered_rate": rate,
            "saturation": saturation,
            "p99_bound_ms": 50.0,
            "bound_percentile": "p95",
        }
        e2e = {"p50": 1.0, "p95": p95, "p99": None, "p99.9": None, "n": 2_000}
        return {
            "scenario": "sweep",
            "case_key": f"q/sweep@{rate:g}/s/noop/one_by_one/n2000/p1s10",
            "status": "completed",
            "error": None,
            "metrics": {"sweep": point, "latency_ms": {"end_to_end": e2e}},
        }

    (line,) = figures.sweep([run(300, 8.0, None), run(1000, 70.0, None)])
    assert line["percentile"] == "p95" and line["highest_rate_under_bound"] == 300
    assert "sustains **300 jobs/s** with p95 under 50 ms" in figures.headline({}, [line])["sweep"][0]
    text = "\n".join(markdown._sweep([line]))
    assert "**300 jobs/s** (p95 < 50 ms)" in text and "too few for a p99, the verdict bounds the p95" in text


def test_a_one_by_one_sized_drain_compares_its_enqueue_rate_not_its_drain():
    # Held until the whole batch is in, a one-by-one case drains what the bulk case drains; its size is bound
    # by the enqueue's time budget, so only its enqueue rate (and the audit) is a verdict. A bulk drain of
    # slower jobs enqueues the noop bulk batch again at a fraction of its size: only its drain is a verdict.
    def sized(who: str, mode: str, rate: float, workload: str = "noop") -> dict:
        return {
            "who": who,
            "case_key": f"{who}/drain/{workload}/{mode}/t2s/p2s5",
            "scheduling_mode": mode,
            "workload": workload,
            "estimates": {
                "throughput": _est(rate, rate * 0.9, rate * 1.1),
                "enqueue_rate": _est(rate, rate * 0.9, rate * 1.1),
            },
        }

    one = figures.compare_cases([sized("a", "one_by_one", 1000), sized("b", "one_by_one", 100)])
    bulk = figures.compare_cases([sized("a", "bulk", 1000), sized("b", "bulk", 100)])
    sleep = figures.compare_cases([sized("a", "bulk", 1000, "sleep"), sized("b", "bulk", 100, "sleep")])
    assert [r["figure"] for r in one["rows"]] == ["enqueue_rate"]
    assert [r["figure"] for r in bulk["rows"]] == ["throughput", "enqueue_rate"]
    assert [r["figure"] for r in sleep["rows"]] == ["throughput"]
    assert [s.split(" on ")[0] for s in figures.headline({"drain/sleep": sleep}, [])["significant"]] == [
        "**a** has the higher drain throughput"
    ]
