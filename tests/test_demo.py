"""The README's main job, in its quick form, as a real subprocess: it trains a source model on
printed digits, transfers it to handwritten digits, and writes the table and the figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_writes_the_comparison_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "digits" / "demo.py"),
            "--quick",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "demo.json").read_text())
    assert sorted(summary["budgets"], key=int) == ["1", "3"]
    for result in summary["budgets"].values():
        names = {row["name"] for row in result["rows"]}
        assert names == {"linear-probe", "finetune", "lp-ft", "wise-ft", "scratch", "source-only"}
        for row in result["rows"]:
            assert 0.0 <= row["mean"] <= 1.0
    assert (out / "accuracy_vs_labels.png").stat().st_size > 10_000
    assert "| linear-probe |" in done.stdout
    # a second run into the same folder starts afresh; a foreign folder is refused
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "digits" / "demo.py"),
            "--quick",
            "--out",
            str(foreign),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and "not a demo output folder" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
