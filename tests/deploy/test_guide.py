"""docs/deploy.md's commands, checked against fly.toml, the Makefile, the settings and the bench program.

The guide walks from an empty Fly account to a fleet benchmark; every command in its `sh` blocks that a
test can reach is checked here: make targets exist, `flyctl scale` names process groups fly.toml has, the
secrets are variables the settings read, `python -m shared.bench` accepts its options, and the health
checks it describes are the ones fly.toml configures.
"""

from __future__ import annotations

import argparse
import re
import shlex

from shared import settings
from shared.bench import compare

from ..support import ROOT
from .project import fly

GUIDE = ROOT / "docs" / "deploy.md"
FLYCTL = {
    ("auth", "login"),
    ("apps", "create"),
    ("apps", "destroy"),
    ("mpg", "create"),
    ("mpg", "attach"),
    ("mpg", "destroy"),
    ("postgres", "create"),
    ("postgres", "attach"),
    ("secrets", "set"),
    ("redis", "create"),
    ("deploy",),
    ("scale", "count"),
    ("scale", "vm"),
    ("status",),
    ("logs",),
    ("machine", "run"),
    ("releases",),
}
SIZES = re.compile(r"(shared-cpu|performance)-(1|2|4|8|16)x")


def commands() -> list[list[str]]:
    """Every command line of the guide's `sh` blocks, continuation lines joined, comments dropped."""
    text = GUIDE.read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r";\s*", line):
                out.append(shlex.split(part.replace("<", "_").replace(">", "_"), comments=True))
    return [c for c in out if c]


def of(program: str) -> list[list[str]]:
    return [c for c in commands() if c[0] == program]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_the_guide_has_every_step_from_an_empty_account_to_a_fleet_benchmark():
    flyctl = {tuple(c[1:3]) for c in of("flyctl")}
    for step in [
        ("apps", "create"),
        ("secrets", "set"),
        ("scale", "count"),
        ("scale", "vm"),
        ("machine", "run"),
    ]:
        assert step in flyctl, step
    assert any(c[:2] == ["make", "deploy"] for c in commands())
    assert any(c[:2] == ["flyctl", "mpg"] or c[:2] == ["flyctl", "postgres"] for c in commands())
    text = GUIDE.read_text()
    for topic in [
        "PostgreSQL sizing",
        "Upstash",
        "RabbitMQ",
        "attached",
        "equal total slots",
        "FLY_MACHINE_ID",
    ]:
        assert topic in text, topic


def test_every_flyctl_command_is_a_known_one():
    for c in of("flyctl"):
        assert tuple(c[1:3]) in FLYCTL or tuple(c[1:2]) in FLYCTL, c


def test_every_make_target_exists():
    for c in of("make"):
        assert c[1] in make_targets(), c


def test_scale_names_process_groups_of_fly_toml_and_real_sizes():
    groups = set(fly()["processes"])
    counts = [c for c in of("flyctl") if c[1:3] == ["scale", "count"]]
    assert counts
    for c in counts:
        named = [a.split("=")[0] for a in c[3:] if "=" in a]
        assert named and set(named) <= groups, c
        sizes = {a.split("=")[0]: a.split("=")[1] for a in c[3:] if "=" in a}
        if {"celery", "pgqueue"} <= set(sizes):
            assert sizes["celery"] == sizes["pgqueue"], f"the guide scales the queues unequally: {c}"
    vms = [c for c in of("flyctl") if c[1:3] == ["scale", "vm"]]
    assert {c[c.index("--process-group") + 1] for c in vms} == {"celery", "pgqueue"}
    for c in vms:
        assert SIZES.fullmatch(c[3]), c


def test_the_secrets_are_variables_the_settings_read():
    known = {getattr(settings, n) for n in dir(settings) if n.startswith("ENV_")}
    for c in of("flyctl"):
        if c[1:3] == ["secrets", "set"]:
            names = [a.split("=")[0] for a in c[3:] if "=" in a and not a.startswith("-")]
            assert names and set(names) <= known, c


def test_the_bench_commands_parse_and_run_attached():
    found = []
    for c in commands():
        if "shared.bench" in c:
            found.append(c[c.index("shared.bench") + 1 :])
        if c[:2] == ["make", "bench"]:
            found += [shlex.split(a.split("=", 1)[1]) for a in c[2:] if a.startswith("ARGS=")]
    text = GUIDE.read_text()
    found += [shlex.split(m) for m in re.findall(r"`make bench ARGS=([^`]+)`", text)]
    assert found
    for args in found:
        p = argparse.ArgumentParser(exit_on_error=False)
        compare.add_arguments(p)
        parsed = p.parse_args(args)
        compare.check_args(parsed)
        assert parsed.attached


def test_the_health_checks_the_guide_describes_are_fly_tomls():
    text = GUIDE.read_text()
    config = fly()
    check = config["checks"]["worker_heartbeat"]
    assert f"port {check['port']}" in text and "`GET /up`" in text
    for group in check["processes"]:
        command = config["processes"][group]
        assert f"bench-{group}-health --serve {check['port']}" == command
    assert "bench-<adapter>-health --serve 8081" in text
