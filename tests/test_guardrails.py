"""The project's guardrails, run by `make test`: lint, format, types, import contracts, and the rule that the
harness and the web never branch on a queue's name (docs/architecture.md, "Adding a queue")."""

from __future__ import annotations

import ast
import subprocess

import pytest

from shared.bench import adapters

from .support import ROOT, VENV_BIN

HARNESS = ROOT / "shared" / "shared" / "bench"
WEB = ROOT / "services" / "web" / "web"
# The web modules that start runs and show results; the queues' own admin pages are about one queue each.
WEB_HARNESS = ("runs.py", "results.py", "api.py", "openapi.py", "throughput.py", "serializers.py")


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["lint-imports"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_the_checks_pass(argv):
    result = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def branches_on_a_name(source: str, names: set[str]) -> list[str]:
    """The places in `source` that compare with, match, or test a prefix of, one of `names`."""

    def named(node: ast.AST) -> bool:
        elts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        return any(
            isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in names for e in elts
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(named(s) for s in (node.left, *node.comparators)):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.MatchValue) and named(node.value):
            found.append(f"line {node.lineno}: case {ast.unparse(node.value)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and any(str(node.args[0].value).startswith(n) for n in names)
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_guard_sees_a_branch_on_a_name():
    names = {"pgqueue", "celery"}
    assert branches_on_a_name("if case.adapter == 'celery':\n    pass\n", names)
    assert branches_on_a_name("x = a in ('pgqueue', 'other')\n", names)
    assert branches_on_a_name("match a:\n    case 'pgqueue':\n        pass\n", names)
    assert branches_on_a_name("ok = who.startswith('celery.')\n", names)
    assert not branches_on_a_name("adapter = adapters.get(case.adapter)\n", names)


def test_the_harness_and_the_web_never_branch_on_an_adapter_name():
    names = set(adapters.NAMES)
    files = [p for p in HARNESS.rglob("*.py") if "adapters" not in p.relative_to(HARNESS).parts]
    files += [WEB / name for name in WEB_HARNESS if (WEB / name).exists()]
    found = {
        str(p.relative_to(ROOT)): where for p in files if (where := branches_on_a_name(p.read_text(), names))
    }
    assert not found, found


def test_no_worker_package_holds_benchmark_code():
    for service in ("celery_worker", "pgqueue_worker", "peers_worker"):
        package = ROOT / "services" / service / service
        assert not [p.name for p in package.rglob("*.py") if "bench" in p.stem], service


def test_code_comments_cite_the_repository_docs_not_an_outside_brief():
    phrase = " ".join(("design", "section"))  # spelled apart, so that this file does not match itself
    cited = [
        f"{p.relative_to(ROOT)}:{n}"
        for top in ("shared", "services", "tests", "db", "docs")
        for p in (ROOT / top).rglob("*")
        if p.suffix in (".py", ".md", ".html", ".sql", ".toml")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if phrase in line.lower()
    ]
    assert not cited, cited
