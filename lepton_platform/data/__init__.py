"""The data layer: the standard schema, splits, combining sources, preprocessing through
``datasets`` with a cache, and bad records.

Importing this package imports ``datasets`` but not torch::

    >>> from lepton_platform.data import SplitConfig, load_data, prepare   # doctest: +SKIP
"""

from __future__ import annotations

from lepton_platform.data.combine import combine, relabel, unified_label_names
from lepton_platform.data.loading import (
    DATA_KEYS,
    DataBundle,
    Source,
    Sources,
    load_data,
    load_unlabelled,
    source_list,
)
from lepton_platform.data.prepare import (
    cache_dir,
    data_fingerprint,
    prepare,
    preprocessing_key,
)
from lepton_platform.data.records import BadRecord, BadRecords
from lepton_platform.data.schema import (
    DOMAIN,
    GROUP,
    LABEL,
    STANDARD_COLUMNS,
    check_schema,
    class_label,
    is_multi_label,
    is_saved_dataset,
    label_indices,
    label_names_of,
    pick_column,
    pick_columns,
    standardize,
)
from lepton_platform.data.splits import (
    SPLITS,
    SplitConfig,
    check_splits,
    group_hash,
    split_dataset,
)

__all__ = [
    "DATA_KEYS",
    "DOMAIN",
    "GROUP",
    "LABEL",
    "SPLITS",
    "STANDARD_COLUMNS",
    "BadRecord",
    "BadRecords",
    "DataBundle",
    "Source",
    "Sources",
    "SplitConfig",
    "cache_dir",
    "check_schema",
    "check_splits",
    "class_label",
    "combine",
    "data_fingerprint",
    "group_hash",
    "is_multi_label",
    "is_saved_dataset",
    "label_indices",
    "label_names_of",
    "load_data",
    "load_unlabelled",
    "pick_column",
    "pick_columns",
    "prepare",
    "preprocessing_key",
    "relabel",
    "source_list",
    "split_dataset",
    "standardize",
    "unified_label_names",
]
