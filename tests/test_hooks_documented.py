"""Every hook has a test of its own and its exact signature in the plugin guide (as datasette
does): adding a hook without both fails here."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lepton_platform import hookspecs

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"


def hooks() -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def signature(fn: Callable[..., Any]) -> str:
    """``lepton_backbones() -> Sequence[BackboneSpec]``, from the (string) annotations."""
    params = []
    for p in inspect.signature(fn).parameters.values():
        note = fn.__annotations__.get(p.name)
        params.append(p.name if note is None else f"{p.name}: {note}")
    return f"{fn.__name__}({', '.join(params)}) -> {fn.__annotations__['return']}"


def test_the_hooks_are_the_ones_the_host_collects() -> None:
    assert sorted(hooks()) == sorted(hookspecs.HOOK_FOR_KIND.values())
    assert len(hooks()) >= 6


@pytest.mark.parametrize("name", sorted(hooks()))
def test_hook_signature_is_in_the_plugin_guide(name: str) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert signature(hooks()[name]) in text, (
        f"docs/plugins.md must show the exact signature `{signature(hooks()[name])}`"
    )


@pytest.mark.parametrize("name", sorted(hooks()))
def test_hook_has_a_docstring_with_an_example(name: str) -> None:
    doc = inspect.getdoc(hooks()[name]) or ""
    assert "Example::" in doc and "@hookimpl" in doc


def _test_names() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found |= {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
    return found


@pytest.mark.parametrize("name", sorted(hooks()))
def test_hook_has_a_test_of_its_own(name: str) -> None:
    tests = [t for t in _test_names() if name in t]
    assert tests, f"no test in tests/ mentions hook {name!r} in its name; write test_{name}_hook"
