"""Bad records: never dropped silently. They stop the run with the file and row named, or,
with ``on_bad_record: skip``, are counted and listed in the run's report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from lepton_platform.errors import ConfigError, DataError

OnBadRecord = Literal["error", "skip"]


@dataclass(frozen=True)
class BadRecord:
    """One record that could not be read: where it is and why."""

    file: str
    row: int | str | None
    reason: str

    def where(self) -> str:
        return self.file if self.row is None else f"{self.file}, row {self.row}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class BadRecords:
    """Collects bad records for one run. ``policy="error"`` raises on the first one."""

    def __init__(self, policy: OnBadRecord = "error") -> None:
        if policy not in ("error", "skip"):
            raise ConfigError(f"on_bad_record must be 'error' or 'skip', got {policy!r}")
        self.policy: OnBadRecord = policy
        self.records: list[BadRecord] = []

    def add(self, file: str, row: int | str | None, reason: str) -> None:
        """Record a bad record; raise :class:`DataError` naming it unless skipping."""
        record = BadRecord(str(file), row, reason)
        if self.policy == "error":
            raise DataError(
                f"{record.where()}: {reason} (set on_bad_record: skip to skip such records; "
                "they are then listed in the report)"
            )
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.records)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records]
