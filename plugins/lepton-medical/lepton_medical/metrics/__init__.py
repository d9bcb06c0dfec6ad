"""The metrics lepton-medical ships: Hugging Face ``evaluate`` modules inside the package, loaded
by path so that they work offline, once per process.

- ``threshold_rates`` (configurations ``sensitivity``, ``specificity``, ``ppv``, ``npv``);
- ``ece`` (expected and maximum calibration error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton_platform.errors import UnknownNameError, did_you_mean

__all__ = ["METRICS_DIR", "MODULES", "load_module", "module_path"]

METRICS_DIR = Path(__file__).resolve().parent
MODULES = ("ece", "threshold_rates")


def module_path(module: str) -> Path:
    """The absolute path of a shipped module's script."""
    if module not in MODULES:
        raise UnknownNameError(
            f"no metric module {module!r} ships with lepton-medical{did_you_mean(module, MODULES)}"
        )
    return METRICS_DIR / module / f"{module}.py"


def load_module(module: str, config_name: str | None = None) -> Any:
    """Load a shipped ``evaluate`` module by path (cached per process, results in memory)."""
    from lepton_platform.metrics import load_path

    return load_path(module_path(module), config_name)
