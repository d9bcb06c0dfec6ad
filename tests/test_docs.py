"""The docs are checked: every ```python example runs (the examples of one page in order, in a
fresh process and an empty folder) and every relative link resolves.

An example that cannot run here (it needs a network) starts with ``# not run: <reason>``.
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


def runnable(block: str) -> bool:
    first = block.lstrip().splitlines()[0] if block.strip() else ""
    if first.startswith("# not run"):
        assert re.match(r"# not run: \S", first), f"say why the example is not run: {first!r}"
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if examples(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_examples_run(page: Path, tmp_path: Path) -> None:
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
