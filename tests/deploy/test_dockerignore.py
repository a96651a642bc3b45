"""The .dockerignore matcher follows Docker's rules (the cases moby/patternmatcher documents)."""

from __future__ import annotations

import pytest

from .dockerctx import DockerIgnore, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "dir/a.py", False),  # anchored at the root; `*` stops at `/`
        ("*/*.py", "dir/a.py", True),
        ("**/*.py", "a.py", True),  # `**/` spans zero folders too
        ("**/*.py", "x/y/z/a.py", True),
        ("**", "anything/at/all", True),
        ("dir/**", "dir/a/b", True),
        ("dir/**/x", "dir/x", True),
        ("dir/**/x", "dir/a/b/x", True),
        ("dir/**/x", "dirx/x", False),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[ab]x", "bx", True),
        ("[ab]x", "cx", False),
        ("a.b", "axb", False),  # `.` is literal
        ("\\*x", "*x", True),
        ("\\*x", "ax", False),
    ],
)
def test_pattern_translation(pattern, path, matches):
    assert (compile_pattern(pattern).match(path) is not None) is matches


def ignore(*lines: str) -> DockerIgnore:
    return DockerIgnore(list(lines))


def test_a_folder_pattern_excludes_everything_below_it():
    rules = ignore("build")
    assert rules.excluded("build/lib/x.py")
    assert not rules.excluded("src/build.py")


def test_exceptions_re_include_and_the_last_match_wins():
    rules = ignore("**", "!src", "src/secret.txt", "!src/secret.txt")
    assert rules.excluded("README.md")
    assert not rules.excluded("src/a/b.py")
    assert not rules.excluded("src/secret.txt")
    rules = ignore("**", "!src", "**/__pycache__")
    assert rules.excluded("src/pkg/__pycache__/m.cpython-311.pyc")
    assert not rules.excluded("src/pkg/m.py")


def test_lines_are_cleaned_comments_and_blanks_skipped():
    rules = ignore("# a comment", "", "  /docs/  ", "./tmp//x", "!")
    assert [p.text for p in rules.patterns] == ["docs", "tmp/x"]
    assert rules.excluded("docs/index.md")
    assert rules.excluded("tmp/x")


def test_no_rules_exclude_nothing():
    assert not ignore().excluded("anything")


def test_excluded_folders_out_of_reach_of_exceptions_are_skipped():
    rules = ignore("**", "!services", "**/.venv")
    assert rules.skippable(".git")
    assert not rules.skippable("services")
    # `!services` could re-include below services/web/.venv, so Docker walks it (and excludes its files).
    assert not rules.skippable("services/web/.venv")
    assert rules.excluded("services/web/.venv/bin/python")
    assert not ignore("**", "!**/keep").skippable(".git")
