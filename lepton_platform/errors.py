"""The exceptions Lepton raises. Every message says what was wrong, where, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LeptonError(Exception):
    """Base class of every error Lepton raises on purpose."""


class PluginError(LeptonError):
    """A plugin failed to import, broke the hook contract, or clashed with another plugin."""


class UnknownNameError(LeptonError, KeyError):
    """A name that nothing registered; the message offers the closest known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(LeptonError, ValueError):
    """A value given by the user (config key, parameter, option) is not allowed."""


class DataError(LeptonError, ValueError):
    """Input data is unusable: the message names the file and row."""


class TrainingError(LeptonError, RuntimeError):
    """Training cannot go on (NaN loss, ...); the message names the step."""


class ArtifactError(LeptonError):
    """A saved model or checkpoint is missing, incompatible, truncated or tampered with."""


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to `name`, best first (empty when none is close)."""
    known = sorted(set(known))
    matches = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    if not matches:
        lowered = name.lower()
        matches = [k for k in known if lowered in k or k in lowered][:n]
    return matches


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' (or the list of known names) for an error message."""
    known = sorted(set(known))
    matches = closest(name, known)
    if matches:
        return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
    if not known:
        return " (nothing of this kind is registered)"
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f"; known: {shown}"
