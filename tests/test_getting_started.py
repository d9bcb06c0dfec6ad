"""docs/getting-started.md, followed as a new user would: in an empty folder, top to bottom, the
``python`` blocks run, each ``yaml`` block whose first line is ``# NAME`` is saved as that
file, and every ``$ command`` of a ``console`` block runs and must succeed (a ``bash`` block
is the set-up this test already ran)."""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def steps(text: str) -> list[tuple[str, str]]:
    """``(kind, body)`` for every runnable block, in page order."""
    out: list[tuple[str, str]] = []
    for kind, body in BLOCK.findall(text):
        if kind == "python":
            out.append(("python", body))
        elif kind == "yaml":
            first = body.splitlines()[0]
            match = re.match(r"#\s*(\S+)$", first)
            assert match, f"a yaml block must start with '# FILE NAME': {first!r}"
            out.append(("file:" + match.group(1), body))
        elif kind == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    out.append(("command", line[2:].split(" # ")[0].strip()))
    return out


def test_the_page_has_something_of_each_kind() -> None:
    kinds = {kind.split(":")[0] for kind, _ in steps(PAGE.read_text(encoding="utf-8"))}
    assert kinds == {"python", "file", "command"}


def test_getting_started_runs_top_to_bottom(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LEPTON_CACHE_DIR": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    work = tmp_path / "user"
    work.mkdir()
    for number, (kind, body) in enumerate(steps(PAGE.read_text(encoding="utf-8")), 1):
        if kind.startswith("file:"):
            (work / kind[5:]).write_text(body, encoding="utf-8")
            continue
        if kind == "python":
            script = work / f".step{number}.py"
            script.write_text(body, encoding="utf-8")
            command = [sys.executable, str(script)]
        else:
            parts = shlex.split(body)
            assignments = [p for p in parts if re.match(r"^[A-Z_]+=", p)]
            command = parts[len(assignments) :]
            env_step = dict(env, **dict(a.split("=", 1) for a in assignments))
        done = subprocess.run(
            command,
            cwd=work,
            env=env if kind == "python" else env_step,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (
            f"step {number} ({kind}: {body[:80]!r}):\n{done.stderr[-4000:]}"
        )
    with (work / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["label"] for row in rows] == ["class0"]
    assert (work / "runs" / "first" / "report.html").is_file()
    assert (work / "runs" / "first-compare" / "comparison.json").is_file()
    assert (work / "runs" / "first-2p" / "model" / "lepton.json").is_file()
