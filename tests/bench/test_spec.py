"""Unit: spec validation (bad input gets field-by-field messages), case keys, interleaving."""

from __future__ import annotations

import importlib

import pydantic
import pytest

from shared.bench import adapters, compare, experiments, spec


def test_matrix_expands_to_cases_with_equal_slots():
    s = experiments.validate_spec(
        {"adapters": ["pgqueue", "celery"], "brokers": ["postgres", "redis"], "jobs": 100, "slots": 4}
    )
    assert [c.who for c in s.cases] == ["pgqueue", "celery.postgres.defaults", "celery.redis.defaults"]
    assert {c.total_slots for c in s.cases} == {4}
    assert "prefork --concurrency 4" in s.cases[1].slot_mapping()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cases": [{"adapter": "pgqueue", "jobs": 0}]}, "cases[0].jobs"),
        ({"cases": [{"adapter": "sidekiq", "jobs": 10}]}, "cases[0].adapter"),
        ({"cases": [{"adapter": "celery", "broker": "kafka", "jobs": 10}]}, "cases[0].options.broker"),
        ({"cases": [{"adapter": "celery", "celery_config": "fast", "jobs": 10}]}, "cases[0].options.config"),
        (
            {"cases": [{"adapter": "celery", "options": {"pool": "gevent"}, "jobs": 10}]},
            "cases[0].options.pool",
        ),
        (
            {"cases": [{"adapter": "pgqueue", "options": {"broker": "redis"}, "jobs": 10}]},
            "cases[0].options.broker",
        ),
        ({"cases": [{"adapter": "pgqueue", "jobs": 10, "workload": "nope"}]}, "cases[0].workload"),
        ({"cases": [{"adapter": "pgqueue", "jobs": 10, "scenario": "steady", "rate": -1}]}, "cases[0].rate"),
        ({"cases": [{"adapter": "pgqueue", "jobs": "many"}]}, "cases[0].jobs"),
        ({"adapters": ["pgqueue"], "jobs": -5}, "jobs"),
        ({"adapters": ["pgqueue"]}, "jobs"),
        ({"cases": []}, "cases"),
        ({"cases": [{"adapter": "pgqueue", "jobs": 1}], "repetitions": 0}, "repetitions"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(experiments.SpecError) as info:
        experiments.validate_spec(data)
    assert field in info.value.errors, info.value.errors


def test_repetitions_interleave_and_faults_run_once():
    s = experiments.validate_spec(
        {
            "cases": [
                {"adapter": "pgqueue", "jobs": 10},
                {"adapter": "celery", "jobs": 10},
                {"adapter": "pgqueue", "jobs": 10, "scenario": "fault"},
            ],
            "repetitions": 3,
        }
    )
    order = [(c.who, rep) for c, rep in s.schedule()]
    assert order[:6] == [
        ("pgqueue", 1),
        ("celery.postgres.defaults", 1),
        ("celery.postgres.defaults", 2),
        ("pgqueue", 2),
        ("pgqueue", 3),
        ("celery.postgres.defaults", 3),
    ]
    assert order[6:] == [("pgqueue", 1)] and s.schedule()[6][0].scenario == "fault"


def test_stored_spec_round_trips():
    s = experiments.validate_spec(default_matrix(brokers=["postgres", "redis"], full=True))
    assert experiments.validate_spec(s.to_dict()) == s
    assert len({c.key for c in s.cases}) == len(s.cases)
    assert any(c.options.get("config") == "reliable" for c in s.cases)
    # pgqueuer at its own default batch, and with its job bodies inline at the default batch, join with --full
    assert {c.who for c in s.cases if c.adapter == "pgqueuer"} == {
        "pgqueuer",
        "pgqueuer.batch10",
        "pgqueuer.inline",
    }
    assert any(not c.recording for c in s.cases)
    # the recording overhead: for every adapter a pair of equal drains, recording on and off, each of the
    # adapter's own size for its pace (50,000 pgqueue jobs would be minutes of procrastinate's), on its fastest
    # variant (Celery: Redis rather than the SQL broker)
    off = {c.who: c for c in s.cases if not c.recording}
    assert set(off) == {"pgqueue", "procrastinate", "pgqueuer", "celery.redis.defaults"}
    keys = {c.key for c in s.cases if c.recording}
    assert all(c.key.removesuffix(".norec") in keys for c in off.values())
    assert off["pgqueue"].jobs == 50_000 and off["procrastinate"].jobs < off["pgqueuer"].jobs < 50_000


def test_the_celery_adapter_offers_the_brokers_and_configurations_celery_knows():
    from shared import celery_app

    options = {o.name: o.choices for o in adapters.get("celery").options}
    assert options["broker"] == celery_app.BROKERS
    assert options["config"] == celery_app.CONFIGURATIONS


def default_matrix(*, brokers: list[str], full: bool = False, **sizes) -> dict:
    """`make bench`'s default matrix over every adapter's default variants on `brokers`."""
    every = {n: adapters.get(n).default_variants(brokers=brokers, full=full) for n in adapters.NAMES}
    faults = {n: adapters.get(n).fault_variants(brokers=brokers, full=full) for n in adapters.NAMES}
    data = compare.default_matrix(variants=every, fault_variants=faults, **sizes)
    for case in data["cases"]:
        case.pop("part")  # which part of the matrix a case is: `--parts` picks by it
    return data


def test_both_queues_with_equal_total_slots_are_one_comparison():
    s = experiments.validate_spec(default_matrix(brokers=["postgres"], noop_jobs=2000))
    noop_bulk = [
        c
        for c in s.cases
        if c.workload == "noop"
        and c.scheduling == "bulk"
        and c.recording
        and c.workers_start == "held"
        and c.jobs == 2000
    ]
    assert {c.who for c in noop_bulk} == {"pgqueue", "procrastinate", "pgqueuer", "celery.postgres.defaults"}
    # sized drains are named by their time budget, so all adapters' are one comparison whatever their sizes
    assert len({c.family for c in noop_bulk}) == 1 and noop_bulk[0].family.endswith("/t2s/slots10")
    assert spec.family_of("pgqueue/drain/noop/bulk/n5/p2s5.norec") == "drain/noop/bulk/n5/slots10.norec"


def test_a_recording_pair_runs_side_by_side_in_alternating_order():
    s = experiments.validate_spec(
        {
            "cases": [
                {"adapter": "pgqueue", "jobs": 100, "recording": False},
                {"adapter": "celery", "jobs": 10},
                {"adapter": "pgqueue", "jobs": 100},
            ],
            "repetitions": 4,
        }
    )
    rounds = [[(c.who, c.recording) for c, r in s.schedule() if r == rep] for rep in range(1, 5)]
    on, off, celery = ("pgqueue", True), ("pgqueue", False), ("celery.postgres.defaults", True)
    assert rounds == [
        [celery, on, off],
        [off, on, celery],
        [celery, on, off],
        [off, on, celery],
    ]


def test_a_drain_holds_its_workers_by_default_and_the_overlap_is_named_apart():
    held = spec.Case(adapter="pgqueue", jobs=10)
    assert held.workers_start == "held" and held.key == "pgqueue/drain/noop/bulk/n10/p1s10"
    overlap = spec.Case(adapter="pgqueue", jobs=10, workers_start="before_enqueue")
    assert overlap.key == "pgqueue/drain.overlap/noop/bulk/n10/p1s10" and overlap.family != held.family
    steady = spec.Case(adapter="pgqueue", jobs=10, scenario="steady")
    assert steady.workers_start == "before_enqueue"
    with pytest.raises(pydantic.ValidationError, match="only a drain"):
        spec.Case(adapter="pgqueue", jobs=10, scenario="steady", workers_start="held")
    with pytest.raises(pydantic.ValidationError, match="only a drain is sized"):
        spec.Case(adapter="pgqueue", jobs=10, scenario="steady", min_seconds=2)


def test_the_default_fault_rows_are_like_for_like_first():
    faults = adapters.get("celery").fault_variants(brokers=["postgres", "redis", "rabbitmq"], full=False)
    assert faults == [
        {"broker": "rabbitmq", "config": "reliable"},
        {"broker": "redis", "config": "reliable"},
        {"broker": "rabbitmq", "config": "defaults"},
        {"broker": "redis", "config": "defaults"},
    ]
    # the SQL broker only when nothing else answers, or with --full
    assert adapters.get("celery").fault_variants(brokers=["postgres"], full=False)[0]["broker"] == "postgres"


WHOS = ("pgqueue", "procrastinate", "pgqueuer", "celery.postgres.defaults")
"""The default variants on the PostgreSQL broker alone, in the registry's order."""


def test_a_sweep_runs_once_per_rate_in_rising_order():
    s = experiments.validate_spec(default_matrix(brokers=["postgres"], sweep_rates=(100.0, 300.0)))
    sweeps = [(c.who, c.rate) for c, _ in s.schedule() if c.scenario == "sweep"]
    assert sweeps == [(who, rate) for who in WHOS for rate in (100, 300)]


def test_the_default_runs_only_the_pairs_marked_default_and_says_what_it_left_out(database_url):
    # The default matrix keeps within its time budget: pgqueue's recording pair runs, the others' are named in
    # the notes; --parts overhead (or --full) runs every adapter's pair.
    import argparse

    from shared import settings

    def spec_for(*argv: str):
        p = argparse.ArgumentParser()
        compare.add_arguments(p)
        args = p.parse_args(["--brokers", "postgres", *argv])
        return compare.build_spec(args, settings.load())

    s, notes = spec_for()
    assert {c.adapter for c in s.cases if not c.recording} == {"pgqueue"}
    assert any("recording pairs of procrastinate, pgqueuer, celery are left out" in n for n in notes), notes
    s, notes = spec_for("--parts", "overhead")
    assert {c.adapter for c in s.cases if not c.recording} == {
        "pgqueue",
        "procrastinate",
        "pgqueuer",
        "celery",
    }
    assert not any("recording pairs" in n for n in notes), notes


def _compare_spec(*argv: str):
    import argparse

    from shared import settings

    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    return compare.build_spec(p.parse_args(["--brokers", "postgres", *argv]), settings.load())[0]


def test_the_peers_run_their_job_bodies_inline_only_with_full(database_url):
    # The arguable choice of threads for the peers' synchronous jobs runs both ways under --full (the default
    # matrix keeps within 10 minutes): inline beside threads, at pgqueuer's default batch (not the product of
    # its two options); the fault runs keep the threads.
    parts = ["--adapters", "procrastinate,pgqueuer", "--parts", "noop-bulk,sleep,fault"]
    default = _compare_spec(*parts)
    assert {c.who for c in default.cases} == {"procrastinate", "pgqueuer"}
    assert {c.options["execution"] for c in default.cases} == {"threads"}
    full = _compare_spec(*parts, "--full")
    drains = {c.who: c for c in full.cases if c.scenario == "drain"}
    assert set(drains) == {
        "procrastinate",
        "procrastinate.inline",
        "pgqueuer",
        "pgqueuer.batch10",
        "pgqueuer.inline",
    }
    assert drains["pgqueuer.inline"].options == {"batch": "500", "execution": "inline"}
    assert drains["pgqueuer.batch10"].options == {"batch": "10", "execution": "threads"}
    assert {c.who for c in full.cases if c.scenario == "fault"} == {"procrastinate", "pgqueuer"}
    # a sleep drain of each inline variant, whose description says what inline costs a blocking job
    assert {c.who for c in full.cases if c.workload == "sleep" and c.scenario == "drain"} >= {
        "procrastinate.inline",
        "pgqueuer.inline",
    }


@pytest.mark.parametrize("name", ["procrastinate", "pgqueuer"])
def test_a_peers_execution_reaches_its_worker_and_its_recorded_configuration(name, tmp_path):
    from shared import settings

    adapter = adapters.get(name)
    for execution in ("threads", "inline"):
        case = spec.Case(adapter=name, options={"execution": execution}, jobs=10, processes=2, slots=5)
        argv = adapter.worker_argv(case, "q1", tmp_path)
        assert argv[argv.index("--execution") + 1] == execution, argv
        configured = adapter.configuration(case.options, settings.load())["execution"]
        assert configured.startswith(f"{execution}:"), configured
    inline = spec.Case(adapter=name, options={"execution": "inline"}, jobs=10, processes=2, slots=5)
    assert inline.who == f"{name}.inline" and "inline" in inline.slot_mapping()
    assert "one at a time per process" in adapter.configuration(inline.options, settings.load())["execution"]
    # a spec may name both of pgqueuer's options at once
    if name == "pgqueuer":
        assert adapter.label({"batch": "10", "execution": "inline"}) == "pgqueuer.batch10.inline"
    with pytest.raises(pydantic.ValidationError, match="execution"):
        spec.Case(adapter=name, options={"execution": "greenlets"}, jobs=10)
    # the worker takes the flag, threads by default, and refuses anything else
    worker = importlib.import_module(f"peers_worker.{name}_worker")
    assert worker.parser().parse_args([]).execution == "threads"
    assert worker.parser().parse_args(["--execution", "inline"]).execution == "inline"
    with pytest.raises(SystemExit):
        worker.parser().parse_args(["--execution", "greenlets"])


@pytest.mark.parametrize("name", ["procrastinate", "pgqueuer"])
def test_the_queue_command_runs_a_peers_executions_when_asked(name):
    import argparse

    from shared.bench import queuebench

    p = argparse.ArgumentParser()
    queuebench.add_arguments(p)
    args = p.parse_args(["--adapter", name])
    assert [o["execution"] for o, _, _ in adapters.get(name).queue_variants(args)] == (
        ["threads", "threads"] if name == "pgqueuer" else ["threads"]
    )
    only = ["--pgqueuer-batches", "500"] if name == "pgqueuer" else []
    args = p.parse_args(["--adapter", name, *only, f"--{name}-executions", "threads,inline"])
    whos = [adapters.get(name).label(o) for o, _, _ in adapters.get(name).queue_variants(args)]
    assert whos == [name, f"{name}.inline"]


def test_attached_mode_runs_a_peers_variant_only_on_workers_that_announce_it():
    def worker(adapter: str, queue: str, **info) -> dict:
        return {"adapter": adapter, "queues": [queue], "info": info}

    older = worker("procrastinate", "p0", concurrency=5)  # announced before `execution`: it ran threads
    inline = worker("procrastinate", "p1", execution="inline")
    procrastinate = adapters.get("procrastinate")
    assert procrastinate.attached_queue([inline, older], {}) == "p0"
    assert procrastinate.attached_queue([older, inline], {"execution": "inline"}) == "p1"
    assert procrastinate.attached_queue([older], {"execution": "inline"}) is None
    pgqueuer = adapters.get("pgqueuer")
    live = [worker("pgqueuer", "q0", batch_size=500, execution="threads")]
    assert pgqueuer.attached_queue(live, {}) == "q0"
    assert pgqueuer.attached_queue(live, {"execution": "inline"}) is None
    assert pgqueuer.attached_queue(live, {"batch": "10"}) is None


def test_attached_mode_runs_a_celery_configuration_only_on_workers_that_run_it():
    def worker(queue: str, broker: str, configuration: str) -> dict:
        return {
            "adapter": "celery",
            "queues": [queue],
            "info": {"broker": broker, "configuration": configuration},
        }

    celery = adapters.get("celery")
    live = [worker("d", "redis", "defaults"), worker("pg", "postgres", "reliable")]
    assert celery.attached_queue(live, {"broker": "redis"}) == "d"
    assert celery.attached_queue(live, {"broker": "redis", "config": "reliable"}) is None
    assert celery.attached_queue(live, {"broker": "postgres", "config": "reliable"}) == "pg"
    assert celery.attached_queue(live, {"broker": "rabbitmq"}) is None
