"""The data layer: the standard schema, splits, preprocessing through ``datasets`` and bad
records."""

from __future__ import annotations

from lepton_platform.data.records import BadRecord, BadRecords

__all__ = ["BadRecord", "BadRecords"]
