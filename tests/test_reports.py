"""Reports: Markdown with PNG figures, self-contained HTML with the same pictures embedded,
rendered by a headless Chromium that must load every image."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lepton_platform.reports import build_report, confusion_from_predictions, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RESULT: dict[str, Any] = {
    "metrics": {
        "validation": {"accuracy": 0.8, "f1_macro": 0.78},
        "test": {
            "accuracy": 0.75,
            "f1_macro": 0.74,
            "ci": {"metric": "accuracy", "low": 0.6, "high": 0.9, "confidence": 0.95},
            "confusion_matrix": [[3, 1], [1, 3]],
            "per_class": {
                "cat": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4},
                "dog": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4},
            },
        },
    },
    "history": [
        {"epoch": 0, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.6},
        {"epoch": 1, "train_loss": 0.7, "val_loss": 0.8, "val_accuracy": 0.8},
    ],
    "data": {
        "domain": "image",
        "label_names": ["cat", "dog"],
        "rows": {"train": 10, "validation": 4, "test": 8},
        "classes": {
            "train": {"cat": 5, "dog": 5},
            "validation": {"cat": 2, "dog": 2},
            "test": {"cat": 4, "dog": 4},
        },
        "domains": {"train": {"photos": 6, "sketches": 4}},
        "bad_records": {
            "policy": "skip",
            "skipped": 1,
            "records": [{"file": "cats/x.png", "row": None, "reason": "not an image"}],
        },
    },
    "strategy": {"name": "lp-ft", "params": {"ft_lr": 0.001}},
    "backbone": {"name": "resnet18", "pretrained": "IMAGENET1K_V1"},
    "seconds": 12.5,
    "peak_memory_mb": 321.0,
}

COMPARISON: dict[str, Any] = {
    "metric": "accuracy",
    "seeds": [0, 1],
    "rows": [
        {
            "name": "lp-ft",
            "kind": "strategy",
            "mean": 0.6,
            "std": 0.01,
            "seconds": 3.0,
            "peak_memory_mb": 100.0,
        },
        {
            "name": "scratch",
            "kind": "baseline",
            "mean": 0.8,
            "std": 0.02,
            "seconds": 2.0,
            "peak_memory_mb": 90.0,
        },
    ],
    "warnings": ["negative transfer: 'lp-ft' scored 0.6000 accuracy, below 'scratch'"],
}

CROSS = {  # what CrossDomainMatrix.to_json() writes
    "rows": ["photos", "sketches"],
    "columns": ["photos", "sketches"],
    "values": [[0.9, 0.5], [0.4, 0.8]],
    "metric": "accuracy",
}


def test_the_report_has_every_section_and_picture(tmp_path: Path) -> None:
    md_path, html_path = write_report(
        tmp_path,
        title="demo",
        config={"strategy": {"name": "lp-ft"}},
        result=RESULT,
        comparison=COMPARISON,
        cross_domain=CROSS,
    )
    markdown = md_path.read_text()
    for heading in (
        "## Summary",
        "## Comparison with baselines",
        "## Data",
        "## Learning curves",
        "## Metrics",
        "## Confusion matrix (test)",
        "## Per-class metrics (test)",
        "## Cross-domain matrix",
        "## Config",
    ):
        assert heading in markdown
    assert "0.7500 (95% bootstrap interval 0.6000 to 0.9000)" in markdown
    assert "> **Warning:** negative transfer: 'lp-ft'" in markdown
    assert "1 bad record(s) were skipped" in markdown and "cats/x.png" in markdown
    assert "| sketches | 4 |" in markdown
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", markdown)
    assert sorted(linked) == sorted(
        f"figures/{n}"
        for n in (
            "class-counts.png",
            "learning-curves.png",
            "confusion-matrix.png",
            "comparison.png",
            "cross-domain.png",
        )
    )
    for link in linked:
        assert (tmp_path / link).read_bytes().startswith(PNG_MAGIC)

    page = html_path.read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in page and "https://" not in page  # self-contained


def test_sections_appear_only_with_their_data() -> None:
    report = build_report(result={"metrics": {"test": {"accuracy": 0.5}}})
    markdown = report.to_markdown()
    assert "## Metrics" in markdown
    assert "Comparison" not in markdown and "Confusion" not in markdown
    assert report.figures == []


def test_confusion_from_predictions() -> None:
    logits = [[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.5, 0.0]]
    out = confusion_from_predictions(logits, [0, 1, 1, 1], ["a", "b"])
    assert out["confusion_matrix"] == [[1, 0], [2, 1]]
    assert out["per_class"]["a"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1}
    )
    assert out["per_class"]["b"]["recall"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- in a browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PROBE = """<script>
window.addEventListener("load", () => {
  const widths = Array.from(document.images).map((img) => img.complete ? img.naturalWidth : 0);
  document.body.setAttribute("data-image-widths", widths.join(","));
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no chromium binary on PATH (install it with `apt-get install -y chromium`); the "
        "report's rendering is not checked"
    )


def render(html_file: Path, tmp_path: Path) -> tuple[list[int], bytes]:
    """Open the report in headless Chromium; return each image's natural width after load
    and a screenshot."""
    browser = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(html_file.read_text().replace("</body>", PROBE + "\n</body>"))
    flags = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'data-image-widths="([^"]*)"', dom.stdout)
    assert match is not None, "the page did not finish loading: " + dom.stdout[:500]
    widths = [int(w) for w in match.group(1).split(",") if w]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", html_file.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return widths, shot.read_bytes()


def assert_not_blank(png: bytes) -> None:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    assert pixels.std() > 5, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.005, "the screenshot shows almost no dark pixels (text)"


def test_the_html_report_renders_with_its_images_in_chromium(tmp_path: Path) -> None:
    _, html_file = write_report(
        tmp_path / "report", result=RESULT, comparison=COMPARISON, cross_domain=CROSS
    )
    widths, screenshot = render(html_file, tmp_path)
    assert len(widths) == 5
    assert all(w > 100 for w in widths), widths
    assert_not_blank(screenshot)
