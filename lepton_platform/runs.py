"""Run folders: one folder per run under a root (``runs/`` by default), holding everything a
run produced::

    runs/digits/
        config.yaml     the whole config, defaults filled in (what ran)
        status.json     running / done / failed, with times and the error
        run.log         what the command said, with timestamps
        metrics.jsonl   the fine-tune engine's step and epoch records (every stage)
        training/       the engine's checkpoints (``--resume`` continues from them)
        model/          the saved model (``lepton predict runs/digits/model ...``)
        result.json     metrics per split, history, data summary, timings
        report.md       the report, and report.html with its pictures embedded

An existing folder is refused unless the run is resumed (same config) or overwritten. Files
are written through a temporary file and a rename, so none is ever left half written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from lepton_platform.errors import ConfigError

__all__ = [
    "RunFolder",
    "RunSummary",
    "atomic_write_json",
    "atomic_write_text",
    "list_runs",
    "open_run_folder",
]

CONFIG = "config.yaml"
STATUS = "status.json"
RESULT = "result.json"
LOG = "run.log"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename:
    readers see the old file or the whole new one, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """:func:`atomic_write_text` of indented JSON (non-JSON values written with ``str``)."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunFolder:
    """An open run folder. ``previous`` is where an overwritten run waits until this one
    finishes (it is deleted then, and kept if this run fails)."""

    path: Path
    resumed: bool = False
    previous: Path | None = None

    @property
    def training_dir(self) -> Path:
        return self.path / "training"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def file(self, name: str) -> Path:
        return self.path / name

    def status(self) -> dict[str, Any]:
        return read_status(self.path)

    def set_status(self, state: str, **extra: Any) -> None:
        """Record ``running`` / ``done`` / ``failed`` (with times) in ``status.json``."""
        status = self.status()
        status.update(extra)
        status["state"] = state
        if state == "running":
            status.setdefault("started", _now())
            status["attempts"] = int(status.get("attempts", 0)) + 1
            status.pop("error", None)
            status.pop("finished", None)
        else:
            status["finished"] = _now()
        atomic_write_json(self.path / STATUS, status)

    def log(self, message: str) -> None:
        """Append a timestamped line to ``run.log``."""
        with (self.path / LOG).open("a", encoding="utf-8") as handle:
            handle.write(f"{_now()} {message}\n")

    def collect_metrics(self) -> Path | None:
        """Gather the engine's ``metrics.jsonl`` files under ``training/`` (one per stage)
        into the run's ``metrics.jsonl``, each record tagged with its ``stage``."""
        files = (
            sorted(self.training_dir.rglob("metrics.jsonl")) if self.training_dir.is_dir() else []
        )
        if not files:
            return None
        lines: list[str] = []
        for file in files:
            stage = file.parent.relative_to(self.training_dir).as_posix()
            for line in file.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill; the engine rewrites it on resume
                if isinstance(record, dict):
                    record.setdefault("stage", "" if stage == "." else stage)
                    lines.append(json.dumps(record))
        return atomic_write_text(self.path / "metrics.jsonl", "\n".join(lines) + "\n")

    def finish(self) -> None:
        """Delete the run this one replaced (``--overwrite``), now that this one is done."""
        if self.previous is not None and self.previous.exists():
            shutil.rmtree(self.previous, ignore_errors=True)
            self.previous = None


def read_status(path: Path) -> dict[str, Any]:
    file = path / STATUS
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The config snapshot of a run folder (``None`` when it has none or it is unreadable)."""
    file = path / CONFIG
    if not file.is_file():
        return None
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def open_run_folder(
    path: str | Path,
    snapshot: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    ignore: Sequence[str] = ("output",),
) -> RunFolder:
    """Create (or, with ``resume``, reopen) the run folder at ``path`` and write the config
    snapshot. An existing folder is refused unless ``resume`` (its config must match, except
    keys in ``ignore``) or ``overwrite`` (it is moved aside and deleted when the new run
    finishes)."""
    from lepton_platform.config import config_differences

    folder = Path(path)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; choose one")
    exists = folder.exists() and (not folder.is_dir() or any(folder.iterdir()))
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder; choose another output.name")
    if resume:
        if not exists:
            raise ConfigError(f"--resume: there is no run at {folder} to resume")
        old = read_snapshot(folder)
        if old is None:
            raise ConfigError(
                f"--resume: {folder} has no readable {CONFIG}; it is not a run folder"
            )
        state = read_status(folder).get("state")
        if state == "done":
            raise ConfigError(
                f"--resume: the run at {folder} already finished; pass --overwrite to run it "
                "again, or choose another output.name"
            )
        differences = config_differences(old, dict(snapshot), ignore=ignore)
        if differences:
            raise ConfigError(
                f"--resume refused: the config differs from the run at {folder}:\n  "
                + "\n  ".join(differences)
                + "\nresume with the run's own config (its config.yaml), or start a new run"
            )
        run = RunFolder(folder, resumed=True)
        run.log("resumed")
        return run
    previous = None
    if exists:
        if not overwrite:
            state = read_status(folder).get("state", "unknown")
            raise ConfigError(
                f"the run folder {folder} already exists (state: {state}); pass --resume to "
                "continue it, --overwrite to replace it, or choose another name with "
                "--set output.name=NAME"
            )
        previous = folder.with_name(f".{folder.name}.replaced-{os.getpid()}-{int(time.time())}")
        folder.rename(previous)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CONFIG, yaml.safe_dump(dict(snapshot), sort_keys=False))
    run = RunFolder(folder, previous=previous)
    run.log(
        "created"
        + (f" (replacing the previous run, kept at {previous} until done)" if previous else "")
    )
    return run


# ----------------------------------------------------------------------------- listing


@dataclass
class RunSummary:
    """One past run for ``lepton runs``."""

    name: str
    path: Path
    state: str
    started: str | None
    kind: str
    strategy: str | None
    headline: str | None
    value: float | None
    seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "state": self.state,
            "started": self.started,
            "kind": self.kind,
            "strategy": self.strategy,
            "metric": self.headline,
            "value": self.value,
            "seconds": self.seconds,
        }


def _headline(result: Mapping[str, Any]) -> tuple[str | None, float | None]:
    test = (result.get("metrics") or {}).get("test") or {}
    ci = test.get("ci") or {}
    preferred = [str(ci["metric"]).replace("-", "_")] if ci.get("metric") else []
    for key in [*preferred, "accuracy", "f1_macro", "f1", "auroc", "balanced_accuracy"]:
        value = test.get(key)
        if isinstance(value, int | float):
            return key, float(value)
    return None, None


def summarize_run(path: Path) -> RunSummary | None:
    """The summary of the run folder at ``path`` (``None`` when it is not one)."""
    if not (path / CONFIG).is_file():
        return None
    status = read_status(path)
    snapshot = read_snapshot(path) or {}
    strategy = (snapshot.get("strategy") or {}).get("name")
    kind = str(status.get("command", "run"))
    metric: str | None = None
    value: float | None = None
    seconds: float | None = None
    result_file = path / RESULT
    comparison_file = path / "comparison.json"
    try:
        if result_file.is_file():
            result = json.loads(result_file.read_text(encoding="utf-8"))
            metric, value = _headline(result)
            seconds = result.get("seconds")
        elif comparison_file.is_file():
            comparison = json.loads(comparison_file.read_text(encoding="utf-8"))
            kind = "compare"
            metric = comparison.get("metric")
            strategies = [r for r in comparison.get("rows", []) if r.get("kind") == "strategy"]
            if strategies:
                best = max(strategies, key=lambda r: float(r.get("mean") or float("-inf")))
                strategy, value = best.get("name"), best.get("mean")
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        pass
    return RunSummary(
        name=path.name,
        path=path,
        state=str(status.get("state", "unknown")),
        started=status.get("started"),
        kind=kind,
        strategy=strategy,
        headline=metric,
        value=value,
        seconds=seconds,
    )


def list_runs(root: str | Path = "runs") -> list[RunSummary]:
    """The run folders directly under ``root``, newest first."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base}: no such folder of runs (runs go to output.root, 'runs')")
    found: list[tuple[float, RunSummary]] = []
    for child in base.iterdir():
        if not child.is_dir() or child.name.startswith("."):
            continue
        summary = summarize_run(child)
        if summary is not None:
            found.append(((child / CONFIG).stat().st_mtime, summary))
    found.sort(key=lambda item: (item[1].started or "", item[0]), reverse=True)
    return [summary for _, summary in found]
