"""The metrics Lepton ships: Hugging Face ``evaluate`` modules inside the package, loaded by path
so that they work offline (never from the Hub).

Each module lives in its own folder (``accuracy/accuracy.py``); :func:`load_module` loads one
with ``evaluate.load`` and caches it per process. Importing this package imports nothing heavy;
``evaluate`` is imported when a module is first loaded.

    >>> from lepton_platform.metrics import load_module
    >>> load_module("classwise", "f1").compute(  # doctest: +SKIP
    ...     predictions=[0, 1], references=[0, 0], num_labels=2)["f1_macro"]
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lepton_platform.errors import UnknownNameError, did_you_mean

__all__ = ["METRICS_DIR", "MODULES", "load_module", "load_path", "module_path"]

#: The folder holding the shipped modules.
METRICS_DIR = Path(__file__).resolve().parent

#: The shipped modules (folder names).
MODULES = (
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "classwise",
    "confusion_matrix",
    "top_k_accuracy",
)

_cache: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def module_path(module: str) -> Path:
    """The absolute path of a shipped module's script."""
    if module not in MODULES:
        raise UnknownNameError(
            f"no metric module {module!r} ships with Lepton{did_you_mean(module, MODULES)}"
        )
    return METRICS_DIR / module / f"{module}.py"


def load_path(script: str | Path, config_name: str | None = None) -> Any:
    """Load an ``evaluate`` module script by path, once per process (later calls reuse it).

    Results are kept in memory (no cache files are written for predictions). Plugins load the
    modules they ship with it, so that their metrics work offline too.
    """
    key = (str(Path(script).resolve()), config_name)
    with _lock:
        if key not in _cache:
            import evaluate

            _cache[key] = evaluate.load(key[0], config_name=config_name, keep_in_memory=True)
        return _cache[key]


def load_module(module: str, config_name: str | None = None) -> Any:
    """Load one of the modules shipped with the core (see :func:`load_path`)."""
    return load_path(module_path(module), config_name)
