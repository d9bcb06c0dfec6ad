"""From a domain and its sources to checked train / validation / test datasets.

>>> from lepton_platform.data import SplitConfig, load_data
>>> bundle = load_data(                                              # doctest: +SKIP
...     "tabular",
...     [{"path": "a.csv", "domain": "site-a"}, {"path": "b.csv", "domain": "site-b"}],
...     split=SplitConfig(validation=0.1, test=0.2, seed=3),
...     on_bad_record="skip",
... )
>>> bundle.summary()["rows"]                                          # doctest: +SKIP
{'train': 700, 'validation': 100, 'test': 200}
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import datasets

from lepton_platform.data.combine import combine, relabel, unified_label_names
from lepton_platform.data.prepare import data_fingerprint
from lepton_platform.data.records import BadRecords, OnBadRecord
from lepton_platform.data.schema import (
    DOMAIN,
    GROUP,
    LABEL,
    check_schema,
    class_label,
    column_values,
    label_indices,
    standardize,
)
from lepton_platform.data.splits import (
    SPLIT_ALIASES,
    SPLITS,
    SplitConfig,
    check_splits,
    normalize_split_name,
    split_dataset,
)
from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lepton_platform.domains import Domain

__all__ = ["DATA_KEYS", "HUB_KEYS", "DataBundle", "load_data", "load_hub"]

#: Source keys that belong to the data layer; they are not passed to ``Domain.load``.
DATA_KEYS = ("domain", "split")
#: The keys of a Hub source, ``{"hub": "<id or local folder>", "config": ..., "split": ...,
#: "revision": ...}``, which the data layer reads with ``datasets.load_dataset`` (``split`` is
#: also the run split the rows become, when it names one); the domain then reads the dataset.
HUB_KEYS = ("hub", "config", "revision")
_HUB_SPLIT = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(\[[^\]]*\])?\s*$")


@dataclass
class DataBundle:
    """The checked splits of one run, with what was learned on the way."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    label_names: list[str]
    input_columns: tuple[str, ...]
    bad_records: BadRecords = field(default_factory=BadRecords)
    fingerprints: dict[str, str] = field(default_factory=dict)
    domain: str = ""

    def __getitem__(self, split: str) -> datasets.Dataset:
        name = normalize_split_name(split)
        result: datasets.Dataset = getattr(self, name)
        return result

    def splits(self) -> datasets.DatasetDict:
        """The three splits as a ``DatasetDict``."""
        return datasets.DatasetDict({s: self[s] for s in SPLITS})

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts for the run's report: rows, classes and domains per split, groups,
        and every bad record that was skipped."""
        rows: dict[str, int] = {}
        classes: dict[str, dict[str, int]] = {}
        domains: dict[str, dict[str, int]] = {}
        groups: dict[str, int] = {}
        for s in SPLITS:
            part = self[s]
            rows[s] = len(part)
            counts = Counter(label_indices(part))
            classes[s] = {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}
            if DOMAIN in part.column_names:
                domains[s] = dict(sorted(Counter(column_values(part, DOMAIN)).items()))
            if GROUP in part.column_names:
                groups[s] = len(set(column_values(part, GROUP)))
        out: dict[str, Any] = {
            "domain": self.domain,
            "label_names": list(self.label_names),
            "input_columns": list(self.input_columns),
            "rows": rows,
            "classes": classes,
        }
        if domains:
            out["domains"] = domains
        if groups:
            out["groups"] = groups
        out["bad_records"] = {
            "policy": self.bad_records.policy,
            "skipped": len(self.bad_records),
            "records": self.bad_records.to_json(),
        }
        out["fingerprints"] = dict(self.fingerprints)
        return out


def _check_domain(domain: Domain) -> Domain:
    from lepton_platform.domains import Domain

    if not isinstance(domain, Domain):
        raise ConfigError(
            f"domain must be a lepton_platform.domains.Domain (build one from a registered "
            f"name with lepton_platform.create_domain), got {type(domain).__name__}"
        )
    return domain


#: A data source: a mapping for the domain's reader, a path, or a dataset in the standard
#: schema (a ``DatasetDict`` brings its own splits).
Source: TypeAlias = (
    Mapping[str, Any] | str | os.PathLike[str] | datasets.Dataset | datasets.DatasetDict
)
Sources: TypeAlias = Source | Sequence[Source]


def source_list(sources: Sources) -> list[Mapping[str, Any]]:
    """Sources as mappings: a path becomes ``{"path": ...}``, a dataset ``{"dataset": ...}``.

    Raises :class:`ConfigError` for anything else, naming its position."""
    if isinstance(sources, Mapping | str | os.PathLike | datasets.Dataset | datasets.DatasetDict):
        sources = [sources]
    if not isinstance(sources, Sequence):
        raise ConfigError(
            "data must be a path, a list of paths, a mapping such as {'path': 'data.csv'}, a "
            f"datasets.Dataset or a DatasetDict; got {type(sources).__name__}"
        )
    out: list[Mapping[str, Any]] = []
    for i, src in enumerate(sources):
        if isinstance(src, str | os.PathLike):
            src = {"path": os.fspath(src)}
        elif isinstance(src, datasets.Dataset | datasets.DatasetDict):
            src = {"dataset": src}
        if not isinstance(src, Mapping):
            raise ConfigError(
                f"source {i} must be a path, a mapping such as {{'path': 'data.csv'}} or a "
                f"dataset, got {type(src).__name__}"
            )
        out.append(src)
    if not out:
        raise ConfigError("no data sources given; give at least one, e.g. {'path': 'data.csv'}")
    return out


def _source_name(source: Mapping[str, Any], index: int) -> str:
    """A name for messages and the default ``domain`` value: the source's domain, else the
    stem of its path (or the last part of its Hub id), else its position."""
    if source.get("domain"):
        return str(source["domain"])
    for key in ("path", "hub"):
        if source.get(key):
            path = Path(str(source[key]))
            return path.stem or str(path)
    return f"source{index}" if index else "data"


def _where(source: Mapping[str, Any], name: str) -> str:
    if "path" in source:
        return f"source {name!r} ({source['path']})"
    if "hub" in source:
        return f"source {name!r} (hub {source['hub']!r})"
    return f"source {name!r}"


def _wanted_split(source: Mapping[str, Any], where: str) -> str | None:
    """The run split a source's rows become (``None``: pooled, split by ``SplitConfig``). A
    Hub source's ``split`` is ``load_dataset``'s: ``train``, ``test[:500]`` become that split;
    another (``unsupervised``, ``train+test``) is pooled."""
    raw = source.get("split")
    if raw is None:
        return None
    if "hub" in source:
        match = _HUB_SPLIT.match(str(raw))
        name = match.group(1).lower() if match else ""
        return normalize_split_name(name, where) if name in SPLIT_ALIASES else None
    return normalize_split_name(raw, where)


def load_hub(source: Mapping[str, Any]) -> datasets.Dataset | datasets.DatasetDict:
    """The dataset a Hub source names, through ``datasets.load_dataset(hub, config,
    split=split, revision=revision)``: a Hub id where a network exists (or the local
    ``datasets`` cache has it), or a local data set repository folder (data files, with a
    ``README.md`` whose YAML may declare configs), which loads without a network.

    Raises :class:`DataError` naming the id when it cannot be loaded (offline, unknown id,
    config or split), and :class:`ConfigError` for a malformed source."""
    hub = source.get("hub")
    if not isinstance(hub, str) or not hub.strip():
        raise ConfigError(f"a Hub source needs 'hub': a data set id or folder, got {hub!r}")
    clash = [k for k in ("path", "dataset") if k in source]
    if clash:
        raise ConfigError(
            f"hub source {hub!r}: give 'hub' or {' / '.join(repr(k) for k in clash)}, not both"
        )
    config, split, revision = source.get("config"), source.get("split"), source.get("revision")
    for key, value in (("config", config), ("split", split), ("revision", revision)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"hub source {hub!r}: {key} must be a string, got {value!r}")
    what = f"hub data set {hub!r}" + (f" (config {config!r})" if config else "")
    try:
        loaded = datasets.load_dataset(hub, config, split=split, revision=revision)
    except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError, ValueError...
        offline = bool(datasets.config.HF_HUB_OFFLINE) or any(
            os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
            for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        )
        hint = (
            "; this process is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), so only the local "
            "datasets cache and local folders can be read: run once with a network, or give "
            "a local folder, a saved dataset or files"
            if offline
            else "; check the id, config and split, and the network"
        )
        raise DataError(
            f"{what} cannot be loaded: {type(exc).__name__}: {str(exc).strip()[:500]}{hint}"
        ) from exc
    if not isinstance(loaded, datasets.Dataset | datasets.DatasetDict):
        raise DataError(
            f"{what}: load_dataset gave {type(loaded).__name__}, not a Dataset or DatasetDict"
        )
    return loaded


def _normalize(
    ds: datasets.Dataset,
    domain: Domain,
    where: str,
    bad_records: BadRecords,
    label_names: Sequence[str] | None,
) -> datasets.Dataset:
    """Bring one loaded piece into the standard schema and refuse it when empty."""
    if not isinstance(ds, datasets.Dataset):
        raise DataError(
            f"{where}: domain {domain.name!r} returned {type(ds).__name__}, expected a "
            "datasets.Dataset or DatasetDict"
        )
    if len(ds) == 0:
        skipped = len(bad_records)
        extra = f" ({skipped} bad record(s) skipped so far)" if skipped else ""
        raise DataError(f"{where}: the source holds no rows{extra}; check its path and format")
    if LABEL in ds.column_names and class_label(ds.features[LABEL]) is None:
        ds = standardize(
            ds,
            input_columns=domain.input_columns,
            label_names=label_names,
            source=where,
            bad_records=bad_records,
            keep_columns=[c for c in ds.column_names if c not in (*domain.input_columns, LABEL)],
        )
    for column in (DOMAIN, GROUP):
        if column in ds.column_names and ds.features[column] != datasets.Value("string"):
            ds = ds.cast_column(column, datasets.Value("string"))
    check_schema(ds, domain.input_columns, where)
    if len(ds) == 0:
        raise DataError(
            f"{where}: no usable rows: all {len(bad_records)} bad record(s) were skipped"
        )
    return ds


def load_data(
    domain: Domain,
    sources: Sources,
    *,
    split: SplitConfig | None = None,
    on_bad_record: OnBadRecord = "error",
    label_names: Sequence[str] | None = None,
) -> DataBundle:
    """Load every source with ``domain``, combine and split them, and check the splits.

    A source is a mapping passed to ``domain.load`` (less the data-layer keys ``domain``,
    the value of the ``domain`` column for its rows, and ``split``, the split it is), a path
    (``{"path": ...}``), a ``datasets.Dataset`` / ``DatasetDict`` (``{"dataset": ...}``: read by
    the domain when it reads datasets, else used as it is, in the standard schema), or a Hub
    data set (``{"hub": id, "config": ..., "split": ...}``, see :func:`load_hub`). Splits a
    source gives (a
    ``DatasetDict`` or ``split``) are used as they are; sources without one are added to
    ``train`` when others give splits, else everything is split by ``split`` (seeded,
    stratified, group-aware when a ``group`` column exists). Several sources, or any source
    naming a ``domain``, add a ``domain`` column. Labels are unified by name, or mapped to
    ``label_names`` when given. Raises :class:`DataError` on an empty source, bad records
    (unless ``on_bad_record="skip"``), unseen classes or groups shared between splits.
    """
    dom = _check_domain(domain)
    config = split or SplitConfig()
    bad = BadRecords(on_bad_record)
    source_list_ = source_list(sources)
    add_domain = len(source_list_) > 1 or any("domain" in s for s in source_list_)

    given: dict[str, list[tuple[str, datasets.Dataset]]] = {s: [] for s in SPLITS}
    pooled: list[tuple[str, datasets.Dataset]] = []
    for i, src in enumerate(source_list_):
        name = _source_name(src, i)
        where = _where(src, name)
        wanted = _wanted_split(src, where)
        loaded = _load_source(dom, src, bad)
        if isinstance(loaded, datasets.DatasetDict):
            parts = {normalize_split_name(k, where): v for k, v in loaded.items()}
            if wanted is not None:
                if wanted not in parts:
                    raise DataError(
                        f"{where}: split {wanted!r} was asked for but the source has "
                        f"{sorted(parts)}"
                    )
                parts = {wanted: parts[wanted]}
        elif wanted is not None:
            parts = {wanted: loaded}
        else:
            parts = {"": loaded}
        for split_name, part in parts.items():
            label = f"{where}[{split_name}]" if split_name else where
            part = _normalize(part, dom, label, bad, label_names)
            if add_domain and DOMAIN not in part.column_names:
                part = part.add_column(DOMAIN, [name] * len(part), feature=datasets.Value("string"))
            (given[split_name] if split_name else pooled).append((label, part))

    everything = [p for _, p in pooled] + [p for parts in given.values() for _, p in parts]
    with_group = sum(GROUP in p.column_names for p in everything)
    if 0 < with_group < len(everything):
        raise DataError(
            f"only {with_group} of {len(everything)} loaded parts have a {GROUP!r} column; "
            "give a group column for every source or for none"
        )
    names = unified_label_names(everything, label_names)

    def merge(pieces: list[tuple[str, datasets.Dataset]]) -> datasets.Dataset:
        relabelled = [(n, relabel(p, names, source=n, bad_records=bad)) for n, p in pieces]
        return combine(relabelled, label_names=names, add_domain=False, bad_records=bad)

    if not any(given.values()):
        dsd = split_dataset(merge(pooled), config)
    else:
        if not given["train"] and not pooled:
            raise DataError(
                "the sources give only "
                + ", ".join(s for s in SPLITS if given[s])
                + " data and nothing to train on; add a source with split: train or one "
                "without a split"
            )
        present = {
            s: merge(given[s] + (pooled if s == "train" else []))
            for s in SPLITS
            if given[s] or (s == "train" and pooled)
        }
        dsd = split_dataset(present, config)
    check_splits(dsd, allow_empty_test=config.test == 0 and not given["test"])

    return DataBundle(
        train=dsd["train"],
        validation=dsd["validation"],
        test=dsd["test"],
        label_names=names,
        input_columns=tuple(dom.input_columns),
        bad_records=bad,
        fingerprints={s: data_fingerprint(dsd[s]) for s in SPLITS},
        domain=dom.name,
    )


def _load_source(
    domain: Domain, source: Mapping[str, Any], bad: BadRecords, *, unlabelled: bool = False
) -> Any:
    """One source read through the domain's reader (``unlabelled``: its reader of unlabelled
    inputs), except a dataset for a domain whose reader takes none
    (:attr:`Domain.reads_datasets`): that one is used as it is, in the standard schema. A Hub
    source (``hub``) is loaded here first and reaches the domain as ``{"dataset": ...}`` with
    the source's other keys (``image_column``, ``label_column``, ...)."""
    if "hub" in source:
        hub = load_hub(source)
        source = {**{k: v for k, v in source.items() if k not in HUB_KEYS}, "dataset": hub}
    given = source.get("dataset")
    if isinstance(given, datasets.Dataset | datasets.DatasetDict) and not domain.reads_datasets:
        extra = [k for k in source if k not in (*DATA_KEYS, "dataset")]
        if extra:
            raise ConfigError(
                f"domain {domain.name!r} reads no datasets itself, so a dataset given as data "
                f"takes no reader options (got {sorted(extra)}); give it in the standard schema "
                f"(input columns {list(domain.input_columns)} and 'label')"
            )
        return given
    options = {k: v for k, v in source.items() if k not in DATA_KEYS}
    if unlabelled:
        return domain.load_unlabelled(options, bad_records=bad)
    return domain.load(options, bad_records=bad)


def load_unlabelled(
    domain: Domain, sources: Sources, *, on_bad_record: OnBadRecord = "error"
) -> datasets.Dataset:
    """Every row of every source read with ``domain`` (every split of a source that has
    several) with :meth:`Domain.load_unlabelled`, without labels: unlabelled target data for
    domain adaptation. A source may hold labels (a class-folder tree); they are dropped
    unread, never used."""
    dom = _check_domain(domain)
    bad = BadRecords(on_bad_record)
    parts: list[datasets.Dataset] = []
    for i, src in enumerate(source_list(sources)):
        name = _source_name(src, i)
        where = f"unlabelled source {name!r}"
        loaded = _load_source(dom, src, bad, unlabelled=True)
        pieces = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
        for piece in pieces:
            if not isinstance(piece, datasets.Dataset):
                raise DataError(
                    f"{where}: domain {dom.name!r} returned {type(piece).__name__}, expected a "
                    "datasets.Dataset or DatasetDict"
                )
            keep = [c for c in dom.input_columns if c in piece.column_names]
            missing = [c for c in dom.input_columns if c not in piece.column_names]
            if missing:
                raise DataError(
                    f"{where}: no input column(s) {missing}; it has {piece.column_names}"
                )
            parts.append(piece.select_columns(keep))
    rows = sum(len(p) for p in parts)
    if rows == 0:
        raise DataError("the unlabelled target sources hold no rows; check their paths")
    if len(parts) == 1:
        return parts[0]
    features = parts[0].features
    # cast only what differs (a cast is a pass over the rows, with its own progress bar)
    return datasets.concatenate_datasets(
        [p if p.features == features else p.cast(features) for p in parts]
    )
