"""Where a search lives: an Optuna study in a database.

By default the study is an embedded SQLite file in the run folder (``sqlite:///<run>/study.db``),
so a killed search continues where it stopped. Any database URL Optuna accepts works as
``storage`` (``postgresql+psycopg2://user:password@host/db`` for many workers on many machines). The
study remembers the config it was created for (its fingerprint and snapshot in the study's user
attributes); opening it with another config is refused with the keys that differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.api.config import config_differences
from lepton_platform.api.runs import RESUME_IGNORED
from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["FINGERPRINT_IGNORED", "config_fingerprint", "default_storage", "open_study"]

#: Config keys that do not change what a trial measures (a study may be continued with them
#: changed): where things are written, progress output, the trial budget.
FINGERPRINT_IGNORED = (
    *(key for key in RESUME_IGNORED if key != "search"),
    "search.trials",
    "search.final",
)

HEARTBEAT_S = 10
GRACE_S = 30


def _strip(snapshot: Mapping[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    def walk(node: Any, key: str) -> Any:
        if isinstance(node, Mapping):
            return {
                k: walk(v, f"{key}.{k}" if key else str(k))
                for k, v in node.items()
                if not any((f"{key}.{k}" if key else str(k)) == i for i in ignore)
            }
        return node

    result: dict[str, Any] = walk(dict(snapshot), "")
    return result


def config_fingerprint(snapshot: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The fingerprint of what a study measures, and the stripped snapshot it hashes."""
    stripped = _strip(snapshot, FINGERPRINT_IGNORED)
    text = json.dumps(stripped, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], stripped


def default_storage(run_folder: str | Path) -> str:
    """``sqlite:///<run folder>/study.db`` (absolute)."""
    return f"sqlite:///{Path(run_folder).absolute() / 'study.db'}"


def _shown(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage with heartbeats (a killed worker's trial is failed and retried
    after :data:`GRACE_S` seconds); raises :class:`ConfigError` when the database cannot be
    reached, before any trial runs."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: expected a SQLAlchemy 2 database URL such as "
            "sqlite:///study.db or postgresql+psycopg2://user:password@host/db"
        )
    if url.startswith(("postgresql://", "postgres://")) and not _installed("psycopg"):
        hint = "postgresql+psycopg2://" if _installed("psycopg2") else "postgresql+psycopg://"
        raise ConfigError(
            f"--storage {_shown(url)}: SQLAlchemy 2 reads postgresql:// with the psycopg (3) "
            f"driver, which is not installed; name the driver: {hint}user:password@host/db "
            "(or pip install 'psycopg[binary]')"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise ConfigError(
                f"--storage {url}: the folder {Path(path).parent} does not exist; create it "
                "or choose another path"
            )
        engine_kwargs["connect_args"] = {"timeout": 60}  # workers wait for each other's writes
    else:
        engine_kwargs["pool_pre_ping"] = True
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(6):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
        except Exception as exc:  # sqlalchemy's errors, a missing database driver
            # workers started together race to create the schema: the loser retries
            text = str(exc)
            racing = (
                type(exc).__name__ == "IntegrityError"
                or "locked" in text
                or "already exists" in text  # the other worker created a table first
            )
            if racing and attempt < 5:
                time.sleep(0.5 * (attempt + 1))
                continue
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(
                f"--storage {_shown(url)}: cannot open the study database "
                f"({type(exc).__name__}: {reason}); check the URL, that the server is reachable "
                "and its driver installed"
            ) from None
    raise AssertionError("unreachable")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def open_study(
    *,
    storage: str,
    study_name: str,
    snapshot: Mapping[str, Any],
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    resume: bool,
) -> optuna.Study:
    """Create the study, or (``resume``) load it after checking it was made for this config.

    Raises :class:`ConfigError` when the study exists and ``resume`` is false, or when it was
    created for another config. Resuming a study that does not exist yet starts it (so every
    worker of a shared study can be started with ``resume=True``)."""
    import optuna

    store = open_storage(storage)
    fingerprint, stripped = config_fingerprint(snapshot)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(store)}
    if study_name in existing:
        study = optuna.load_study(
            study_name=study_name, storage=store, sampler=sampler, pruner=pruner
        )
        attrs = study.user_attrs
        if attrs.get("lepton_fingerprint") != fingerprint:
            old = attrs.get("lepton_config")
            if not isinstance(old, Mapping):
                raise ConfigError(
                    f"study {study_name!r} in {_shown(storage)} was not created by lepton tune; "
                    "choose another --study name"
                )
            diffs = config_differences(old, stripped)
            shown = "\n  ".join(d.replace("in the run", "in the study") for d in diffs[:20])
            raise ConfigError(
                f"study {study_name!r} in {_shown(storage)} was created by another config "
                f"({len(diffs)} difference(s)):\n  {shown}\nuse the same config, or another "
                "--study name / run folder"
            )
        if not resume:
            raise ConfigError(
                f"study {study_name!r} already exists in {_shown(storage)} "
                f"({len(study.trials)} trials): pass --resume (resume=True) to continue it, or "
                "choose another --study name"
            )
        return study
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        direction="minimize" if direction == "minimize" else "maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,  # another worker may create it at the same moment
    )
    if study.user_attrs.get("lepton_fingerprint") not in (None, fingerprint):
        raise ConfigError(f"study {study_name!r} was just created by another config")
    study.set_user_attr("lepton_fingerprint", fingerprint)
    study.set_user_attr("lepton_config", stripped)
    return study
