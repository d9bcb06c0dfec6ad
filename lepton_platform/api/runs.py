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
system; a status left ``running`` by a killed process is listed as ``stopped`` (its pid is
gone) and resumes like an interrupted run. An existing folder is refused unless the run is
resumed (same config), overwritten, or it failed before training started (a plain retry reuses
it). Files are written through a temporary file and a rename, with the permissions the user's
umask gives.

Faults: a write the system refuses (a full disk, a read-only or unwritable folder) is an
:class:`~lepton_platform.errors.ArtifactError` naming the path; what was written before stays
whole. A failing run still records its state: on a full disk the status is rewritten in the
space the file already holds. What a killed run left half-written is tidied when the folder is
opened again: temporary files and folders are deleted, a model moved aside while its
replacement was renamed in is put back, the run an ``--overwrite`` replaced is deleted once its
replacement finished (and put back when the kill came before the new folder existed).
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

from lepton_platform._io import atomic_write_json, atomic_write_text, recover_folders, write_error
from lepton_platform.errors import ArtifactError, ConfigError, LeptonError

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
#: What ``lepton runs`` shows for a run whose status says ``preparing`` or ``running`` but
#: whose process is gone (killed, or its machine went down): ``--resume`` continues it.
STOPPED = "stopped"


def _cannot_write(path: Path, exc: BaseException, advice: str) -> ArtifactError:
    """A write the system refused, as the error ``lepton`` prints: the path, why, what to do."""
    return ArtifactError(f"{write_error(path, exc)}. {advice}")


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
        try:
            self._acquire(command)
        except OSError as exc:
            raise _cannot_write(
                self.path,
                exc,
                f"The run folder {self.folder} cannot be opened under {self.folder.parent}; "
                "choose another output.root (--set output.root=DIR)",
            ) from exc

    def _acquire(self, command: str) -> None:
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
        except LeptonError as exc:
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
            try:
                run = cls._claim(folder, snapshot, command, resume, overwrite, ignore)
                run._lock = lock
                run.mark("preparing", command=command)
            except OSError as exc:
                raise _cannot_write(
                    folder, exc, "Nothing was trained; choose another output.root or free space"
                ) from exc
        except BaseException:
            lock.release()
            raise
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

        tidied = _tidy_replaced(folder)
        exists = folder.is_dir() and any(folder.iterdir())
        status = read_status(folder) if exists else {}
        state = status.get("state", "unknown")
        shown = state
        if state in ("preparing", "running"):  # we hold the lock: its process is gone
            shown = f"{state} when its process stopped ({STOPPED})"
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
            for line in [*tidied, *recover_folders(folder)]:
                run.log(line)
            run.log("resumed")
            return run
        previous = None
        if exists:
            reusable = status.get("trained") is False and state in ("failed", "preparing")
            if reusable:
                shutil.rmtree(folder)  # it failed before training: nothing to keep
            elif not overwrite:
                resumable = "--resume to continue it, " if state != "finished" else ""
                kept = _replaced(folder)
                raise ConfigError(
                    f"the run folder {folder} already exists (state: {shown}); pass "
                    f"{resumable}--overwrite to replace it, or choose another name with "
                    "--set output.name=NAME"
                    + (f" (the run it was to replace is kept at {kept[-1]})" if kept else "")
                )
            else:
                previous = folder.with_name(
                    f".{folder.name}.replaced-{os.getpid()}-{int(time.time())}"
                )
                folder.rename(previous)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / CONFIG, yaml.safe_dump(dict(snapshot), sort_keys=False))
        except OSError:
            if previous is not None:  # put the replaced run back where it was
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    previous.rename(folder)
            raise
        run = cls(folder, previous=previous)
        for line in tidied:
            run.log(line)
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
        try:
            atomic_write_json(self.path / STATUS, status)
        except OSError as exc:
            raise _cannot_write(self.path / STATUS, exc, _ADVICE) from exc

    def _record_state(self, state: str, **extra: Any) -> str | None:
        """:meth:`mark`, and when the disk is full, the status rewritten in place within the
        space the file already holds (the short form when the full one does not fit). Returns
        why the state could not be recorded, or ``None``."""
        try:
            self.mark(state, **extra)
            return None
        except (ArtifactError, OSError) as exc:
            failure = str(exc)
        file = self.path / STATUS
        status = {**self.status(), **extra, "state": state, "finished": _now()}
        status["pid"], status["host"] = os.getpid(), socket.gethostname()
        kept = ("state", "pid", "host", "finished", "trained")
        short: dict[str, Any] = {k: status[k] for k in kept if k in status}
        if "error" in extra:
            short["error"] = str(extra["error"])[:200]
        try:
            held = file.stat()
            room = max(held.st_size, held.st_blocks * 512)
            for candidate in (status, short):
                data = (json.dumps(candidate, indent=2, default=str) + "\n").encode()
                if len(data) <= room:
                    with file.open("r+b") as handle:  # the blocks it holds: no new space needed
                        handle.write(data)
                        handle.truncate()
                        handle.flush()
                        os.fsync(handle.fileno())
                    return None
        except OSError as exc:
            return f"{failure}; rewriting it in place failed too ({exc})"
        return failure

    def log(self, message: str) -> None:
        """Append a timestamped line to ``run.log``."""
        if not self.main:
            return
        try:
            with (self.path / LOG).open("a", encoding="utf-8") as handle:
                handle.write(f"{_now()} {message}\n")
        except OSError as exc:
            raise _cannot_write(self.path / LOG, exc, _ADVICE) from exc

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        if self.main:
            try:
                atomic_write_json(path, data)
            except OSError as exc:
                raise _cannot_write(path, exc, _ADVICE) from exc
        return path

    def report(self, title: str, **sections: Any) -> tuple[Path, Path] | None:
        """Write ``report.md`` and ``report.html`` (see
        :func:`lepton_platform.reports.write_report`)."""
        if not self.main:
            return None
        from lepton_platform.reports import write_report

        try:
            return write_report(self.path, title=title, **sections)
        except OSError as exc:
            raise _cannot_write(self.path / "report.md", exc, _ADVICE) from exc

    def collect_metrics(self) -> Path | None:
        """Gather the engine's ``metrics.jsonl`` files under the folder (one per training stage)
        into the run's ``metrics.jsonl``, each record tagged with its ``stage``. A write the
        system refuses is a warning, not an error: the per-stage files hold every record (it
        also runs while a failed run is being closed, which must go on to record the state)."""
        if not self.main:
            return None
        try:
            return self._collect_metrics()
        except OSError as exc:
            import warnings

            warnings.warn(
                f"{write_error(self.path / 'metrics.jsonl', exc)}; the records stay in each "
                "stage's metrics.jsonl",
                stacklevel=2,
            )
            return None

    def _collect_metrics(self) -> Path | None:
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
        """Mark the run ``finished``, delete the run it replaced and release the lock. When
        even that cannot be written, an :class:`ArtifactError` says so (the lock is released
        and the replaced run kept)."""
        from lepton_platform.engine.distributed import wait_for_everyone

        try:
            if self.main:
                problem = self._record_state("finished", **extra, disk_bytes=_disk_bytes(self.path))
                if problem is not None:
                    raise ArtifactError(
                        f"the run at {self.path} finished, but its status could not be "
                        f"recorded: {problem}"
                    )
                for replaced in _replaced(self.path):
                    shutil.rmtree(replaced, ignore_errors=True)
                self.previous = None
        finally:
            self.close()
        wait_for_everyone()

    def fail(self, exc: BaseException) -> None:
        """Mark the run ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` and release the lock;
        an overwritten run stays where it was moved (the log says where). Never raises, so the
        error that ended the run is the one reported; on a full disk the state is still
        recorded where it can be (see :meth:`_record_state`), and a note on ``exc`` says when
        it could not be."""
        try:
            if self.main:
                if isinstance(exc, KeyboardInterrupt):
                    problem = self._record_state(
                        "interrupted", error="interrupted; continue with --resume"
                    )
                else:
                    problem = self._record_state("failed", error=f"{type(exc).__name__}: {exc}")
                if problem is not None:
                    exc.add_note(f"the run's state could not be recorded: {problem}")
                if self.previous is not None:
                    with contextlib.suppress(LeptonError, OSError):
                        self.log(f"the run it was to replace is kept at {self.previous}")
        finally:
            self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


_ADVICE = "Free space or choose another output.root; files written before are intact"


def _replaced(folder: Path) -> list[Path]:
    """The runs an ``--overwrite`` of ``folder`` moved aside, oldest first."""
    if not folder.parent.is_dir():
        return []
    return sorted(p for p in folder.parent.glob(f".{folder.name}.replaced-*") if p.is_dir())


def _tidy_replaced(folder: Path) -> list[str]:
    """Settle what a killed ``--overwrite`` left (the caller holds the lock): the replaced run
    is put back when the kill came before its replacement existed, and deleted once the
    replacement finished; otherwise it is kept (a failed replacement points to it)."""
    replaced = _replaced(folder)
    if not replaced:
        return []
    if not folder.exists():
        replaced[-1].rename(folder)
        return [f"put back {folder} from {replaced[-1]} (its --overwrite was killed early)"]
    if read_status(folder).get("state") == "finished":
        for old in replaced:
            shutil.rmtree(old, ignore_errors=True)
        return [f"deleted {old}, replaced by this finished run" for old in replaced]
    return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


def live_state(status: Mapping[str, Any]) -> str:
    """The state a status records, or :data:`STOPPED` when it says ``preparing`` or
    ``running`` but names a process of this host that no longer exists."""
    state = str(status.get("state", "unknown"))
    pid = status.get("pid")
    if (
        state in ("preparing", "running")
        and isinstance(pid, int)
        and status.get("host") == socket.gethostname()
        and not _pid_alive(pid)
    ):
        return STOPPED
    return state


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
        state=live_state(status),
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
