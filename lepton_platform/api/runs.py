"""Run folders: one folder per run under a root (``runs/`` by default), holding everything a
run produced, opened, locked, marked, logged, reported and finished through one API::

    runs/digits/
        config.yaml     the whole config, defaults filled in (what ran)
        status.json     preparing / running / finished / failed / interrupted, with times,
                        the process and host holding it, and the error
        run.log         what the run said, with timestamps
        metrics.jsonl   the fine-tune engine's step and epoch records (every stage)
        training/       the engine's checkpoints (``--resume`` continues from them)
        model/          the saved model (``lepton predict runs/digits/model ...``)
        result.json     metrics per split, history, data summary, timings
        report.md       the report, and report.html with its pictures embedded

Only the main process of a run (``accelerate launch`` starts several) creates and writes the
folder; the others wait for it and write nothing. An exclusive lock (``<root>/.<name>.lock``)
is held while a run is open, so two processes never write one run: a second ``lepton run`` of
that name is refused at once, naming the holder. A dead holder's lock is released by the
system. An existing folder is refused unless the run is resumed (same config), overwritten, or
it failed before training started (a plain retry reuses it). Files are written through a
temporary file and a rename, with the permissions the user's umask gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from lepton_platform._io import atomic_write_json, atomic_write_text
from lepton_platform.errors import ConfigError

__all__ = [
    "RESUME_IGNORED",
    "RunFolder",
    "RunSummary",
    "list_runs",
    "read_status",
]

CONFIG = "config.yaml"
STATUS = "status.json"
RESULT = "result.json"
LOG = "run.log"

#: States of a run. ``preparing``: data and models being built (nothing trained yet).
STATES = ("preparing", "running", "finished", "failed", "interrupted")


def _resume_ignored() -> tuple[str, ...]:
    from lepton_platform.settings import TrainConfig

    return ("output", "compare", "search", *(f"train.{f}" for f in TrainConfig.resumable_fields()))


#: Config keys a resumed run may change (they do not change what it computes): where things
#: go, the other commands' sections, and the train fields marked resumable.
RESUME_IGNORED: tuple[str, ...] = _resume_ignored()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_status(path: Path) -> dict[str, Any]:
    """A run folder's ``status.json`` (empty when missing or unreadable)."""
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


class _Lock:
    """An exclusive ``flock`` on ``<root>/.<name>.lock`` holding the holder's pid and host."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder.parent / f".{folder.name}.lock"
        self._handle: IO[str] | None = None

    def acquire(self, command: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                handle.close()
                raise ConfigError(
                    f"the run folder {self.folder} is in use by {_holder_text(holder)}; wait for "
                    "it to finish, stop it, or choose another name with --set output.name=NAME"
                ) from None
            try:  # the holder before may have removed the file between our open and flock
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _now(),
            "command": command,
        }
        handle.write(json.dumps(info))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # removed while still held: a waiter re-checks the inode
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _holder_text(raw: str) -> str:
    try:
        info = json.loads(raw)
    except ValueError:
        return "another process"
    return (
        f"process {info.get('pid')} on {info.get('host')} (lepton {info.get('command')}, "
        f"since {info.get('since')})"
    )


@dataclass
class RunFolder:
    """An open run folder. ``previous`` is where an overwritten run waits until this one
    finishes (it is deleted then, and kept if this run fails). Only the main process writes;
    on the others every writing method does nothing."""

    path: Path
    resumed: bool = False
    previous: Path | None = None
    main: bool = True
    _lock: _Lock | None = field(default=None, repr=False)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        snapshot: Mapping[str, Any],
        *,
        command: str = "run",
        resume: bool = False,
        overwrite: bool = False,
        ignore: Sequence[str] = RESUME_IGNORED,
    ) -> RunFolder:
        """Create (or, with ``resume``, reopen) the run folder at ``path``, lock it, write the
        config snapshot and mark it ``preparing``. An existing folder is refused unless
        ``resume`` (its config must match, except keys in ``ignore``), ``overwrite`` (it is
        moved aside and deleted when the new run finishes), or it failed before training (it
        is reused). Under several processes the main one does this and the others wait; an
        error reaches every process."""
        from lepton_platform.engine.distributed import broadcast, is_main_process

        folder = Path(path)
        if not is_main_process():
            outcome = broadcast(None)
            if isinstance(outcome, str):
                raise ConfigError(outcome)
            return cls(folder, resumed=bool(outcome), main=False)
        try:
            run = cls._open_main(folder, snapshot, command, resume, overwrite, ignore)
        except ConfigError as exc:
            broadcast(str(exc))
            raise
        broadcast(run.resumed)
        return run

    @classmethod
    def _open_main(
        cls,
        folder: Path,
        snapshot: Mapping[str, Any],
        command: str,
        resume: bool,
        overwrite: bool,
        ignore: Sequence[str],
    ) -> RunFolder:
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; choose one")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} exists and is not a folder; choose another output.name")
        lock = _Lock(folder)
        lock.acquire(command)
        try:
            run = cls._claim(folder, snapshot, command, resume, overwrite, ignore)
        except BaseException:
            lock.release()
            raise
        run._lock = lock
        run.mark("preparing", command=command)
        return run

    @classmethod
    def _claim(
        cls,
        folder: Path,
        snapshot: Mapping[str, Any],
        command: str,
        resume: bool,
        overwrite: bool,
        ignore: Sequence[str],
    ) -> RunFolder:
        from lepton_platform.api.config import config_differences

        exists = folder.is_dir() and any(folder.iterdir())
        status = read_status(folder) if exists else {}
        state = status.get("state", "unknown")
        if resume:
            if not exists:
                raise ConfigError(f"--resume: there is no run at {folder} to resume")
            old = read_snapshot(folder)
            if old is None:
                raise ConfigError(
                    f"--resume: {folder} has no readable {CONFIG}; it is not a run folder"
                )
            if state == "finished":
                raise ConfigError(
                    f"--resume: the run at {folder} already finished; pass --overwrite to run it "
                    "again, or choose another name with --set output.name=NAME"
                )
            differences = config_differences(old, dict(snapshot), ignore=ignore)
            if differences:
                raise ConfigError(
                    f"--resume refused: the config differs from the run at {folder}:\n  "
                    + "\n  ".join(differences)
                    + "\nresume with the run's own config (its config.yaml), or start a new run"
                )
            run = cls(folder, resumed=True)
            run.log("resumed")
            return run
        previous = None
        if exists:
            reusable = status.get("trained") is False and state in ("failed", "preparing")
            if reusable:
                shutil.rmtree(folder)  # it failed before training: nothing to keep
            elif not overwrite:
                resumable = "--resume to continue it, " if state != "finished" else ""
                raise ConfigError(
                    f"the run folder {folder} already exists (state: {state}); pass "
                    f"{resumable}--overwrite to replace it, or choose another name with "
                    "--set output.name=NAME"
                )
            else:
                previous = folder.with_name(
                    f".{folder.name}.replaced-{os.getpid()}-{int(time.time())}"
                )
                folder.rename(previous)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CONFIG, yaml.safe_dump(dict(snapshot), sort_keys=False))
        run = cls(folder, previous=previous)
        run.log(
            f"created ({command})"
            + (f", replacing the previous run, kept at {previous} until done" if previous else "")
        )
        return run

    # -- paths ------------------------------------------------------------------------------

    @property
    def training_dir(self) -> Path:
        return self.path / "training"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- writing ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return read_status(self.path)

    def mark(self, state: str, **extra: Any) -> None:
        """Record the run's state (with times, the holder's pid and host) in ``status.json``.
        ``running`` means training has started (a failure after it keeps the folder)."""
        if not self.main:
            return
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        status = self.status()
        status.update(extra)
        status["state"] = state
        status["pid"], status["host"] = os.getpid(), socket.gethostname()
        if state == "preparing":
            status.setdefault("started", _now())
            status["attempts"] = int(status.get("attempts", 0)) + 1
            status.setdefault("trained", False)
            for key in ("error", "finished"):
                status.pop(key, None)
        elif state == "running":
            status["trained"] = True
        else:
            status["finished"] = _now()
        atomic_write_json(self.path / STATUS, status)

    def log(self, message: str) -> None:
        """Append a timestamped line to ``run.log``."""
        if not self.main:
            return
        with (self.path / LOG).open("a", encoding="utf-8") as handle:
            handle.write(f"{_now()} {message}\n")

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        if self.main:
            atomic_write_json(path, data)
        return path

    def report(self, title: str, **sections: Any) -> tuple[Path, Path] | None:
        """Write ``report.md`` and ``report.html`` (see
        :func:`lepton_platform.reports.write_report`)."""
        if not self.main:
            return None
        from lepton_platform.reports import write_report

        return write_report(self.path, title=title, **sections)

    def collect_metrics(self) -> Path | None:
        """Gather the engine's ``metrics.jsonl`` files under the folder (one per training stage)
        into the run's ``metrics.jsonl``, each record tagged with its ``stage``."""
        if not self.main:
            return None
        files = sorted(p for p in self.path.rglob("metrics.jsonl") if p.parent != self.path)
        if not files:
            return None
        lines: list[str] = []
        for file in files:
            stage = file.parent.relative_to(self.path).as_posix()
            for line in file.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill; the engine rewrites it on resume
                if isinstance(record, dict):
                    record.setdefault("stage", stage.removeprefix("training").strip("/"))
                    lines.append(json.dumps(record))
        return atomic_write_text(self.path / "metrics.jsonl", "\n".join(lines) + "\n")

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Send Lepton's log records and Python warnings to ``run.log`` while the block runs."""
        if not self.main:
            yield
            return
        handler = logging.FileHandler(self.path / LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger("lepton_platform"), logging.getLogger("py.warnings")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(handler)
                logger.setLevel(level)
            handler.close()

    # -- closing ----------------------------------------------------------------------------

    def finish(self, **extra: Any) -> None:
        """Mark the run ``finished``, delete the run it replaced and release the lock."""
        from lepton_platform.engine.distributed import wait_for_everyone

        if self.main:
            self.mark("finished", **extra, disk_bytes=_disk_bytes(self.path))
            if self.previous is not None and self.previous.exists():
                shutil.rmtree(self.previous, ignore_errors=True)
                self.previous = None
        self.close()
        wait_for_everyone()

    def fail(self, exc: BaseException) -> None:
        """Mark the run ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` and release the lock;
        an overwritten run stays where it was moved (the log says where)."""
        if self.main:
            if isinstance(exc, KeyboardInterrupt):
                self.mark("interrupted", error="interrupted; continue with --resume")
            else:
                self.mark("failed", error=f"{type(exc).__name__}: {exc}")
            if self.previous is not None:
                self.log(f"the run it was to replace is kept at {self.previous}")
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


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
    disk_mb: float | None = None

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
            "disk_mb": self.disk_mb,
        }


def _headline(result: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The run's headline metric and its test value, as ``result.json`` names it."""
    test = (result.get("metrics") or {}).get("test") or {}
    key = (result.get("headline") or {}).get("key")
    value = test.get(key) if key else None
    if isinstance(value, int | float):
        return str(key), float(value)
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
            metric = comparison.get("key") or comparison.get("metric")
            best = comparison.get("best")
            row = next((r for r in comparison.get("rows", []) if r.get("name") == best), None)
            if row is not None:
                strategy, value = row.get("name"), row.get("mean")
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        pass
    disk = status.get("disk_bytes")
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
        disk_mb=(disk if isinstance(disk, int) else _disk_bytes(path)) / 2**20,
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
