"""The docs are checked: every ```python example runs (the examples of one page in order, in a
fresh process and an empty folder) and every relative link resolves.

An example that cannot run here (it needs a network) starts with ``# not run: <reason>``. An
example that starts with ``# file: <path>`` is a file of the page's project (a plugin module,
its test): it is written to that path in the folder, before the examples run, instead of being
run itself, so the examples can import it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def examples(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


FILE = re.compile(r"# file: (\S+)$")


def first_line(block: str) -> str:
    return block.lstrip().splitlines()[0] if block.strip() else ""


def runnable(block: str) -> bool:
    first = first_line(block)
    if FILE.match(first):
        return False
    if first.startswith("# not run"):
        assert re.match(r"# not run: \S", first), f"say why the example is not run: {first!r}"
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if examples(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_examples_run(page: Path, tmp_path: Path) -> None:
    for block in examples(page):
        named = FILE.match(first_line(block))
        if named:
            target = tmp_path / named.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block, encoding="utf-8")
    code = "\n\n".join(b for b in examples(page) if runnable(b))
    if not code.strip():
        pytest.skip(f"{page.name}: every example needs a network (each says why)")
    script = tmp_path / "examples.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "LEPTON_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{page.relative_to(ROOT)}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    text = BLOCK.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:|^#", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_generated_docs_are_up_to_date() -> None:
    """docs/config.md and the table of spec fields in docs/plugins.md are what
    ``scripts/gen_docs.py`` writes from the code."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_every_spec_field_has_a_meaning() -> None:
    from lepton_platform.specs import SPEC_TYPES, spec_fields

    undocumented = [
        f"{record.__name__}.{name}"
        for record in SPEC_TYPES.values()
        for cls in record.__mro__
        if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__")
        for name, _, _, meaning in spec_fields(cls)
        if not meaning
    ]
    assert not undocumented, f"spec fields without a meaning: {sorted(set(undocumented))}"
