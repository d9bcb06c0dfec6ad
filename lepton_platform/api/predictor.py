"""Saving a trained model under registered names, and loading one back as a predictor.

    >>> save_model("runs/cats", model, domain="image", backbone="resnet18",  # doctest: +SKIP
    ...            backbone_config=model.backbone.config(), task="classification", ...)
    >>> predictor = load("runs/cats")                                       # doctest: +SKIP
    >>> predictor.predict(["photo.jpg"])[0].label                          # doctest: +SKIP
    'cat'

The folder format (checksums, the manifest) is :mod:`lepton_platform.artifacts`; this module
adds the registry: which plugin provides each part, and rebuilding the model through it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lepton_platform.api.job import names_plugins
from lepton_platform.artifacts import read_weights, write_model
from lepton_platform.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    LeptonError,
    UnknownNameError,
)
from lepton_platform.registry import (
    create_backbone,
    create_domain,
    create_task,
    get_backbone,
    get_domain,
    get_task,
)

if TYPE_CHECKING:
    import datasets
    import numpy as np

    from lepton_platform.domains import Domain
    from lepton_platform.models import TransferModel
    from lepton_platform.specs import Spec
    from lepton_platform.tasks import Task

__all__ = [
    "BadInput",
    "BatchPrediction",
    "NamedInput",
    "Prediction",
    "Predictor",
    "collect_inputs",
    "load",
    "predict",
    "process_device",
    "save_model",
]

_GETTERS = (("domain", get_domain), ("backbone", get_backbone), ("task", get_task))


def _provider_json(spec: Spec) -> dict[str, Any]:
    provider = spec.provider
    if provider is None:
        return {"distribution": None, "version": None, "plugin": None}
    return {
        "distribution": provider.distribution,
        "version": provider.version,
        "plugin": provider.plugin,
    }


def save_model(
    folder: str | os.PathLike[str],
    model: TransferModel,
    *,
    domain: str,
    backbone: str,
    backbone_config: Mapping[str, Any],
    task: str,
    task_config: Mapping[str, Any],
    label_names: Sequence[str],
    preprocessing: Mapping[str, Any],
    strategy: Mapping[str, Any],
    metrics: Mapping[str, Any],
    data_fingerprints: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a trained model as one folder (see :func:`lepton_platform.artifacts.write_model`)
    and return its path. ``domain``, ``backbone`` and ``task`` are registered names, recorded
    with the plugin distribution and version that provide them; the configs are what their
    factories take to rebuild the same architecture (``backbone.config()``, ``task.config()``).
    """
    names = {"domain": domain, "backbone": backbone, "task": task}
    specs = {}
    for kind, getter in _GETTERS:
        try:
            specs[kind] = getter(names[kind])
        except UnknownNameError as exc:
            raise ArtifactError(
                f"cannot save: {exc}; a model is saved under registered names so that "
                "load() can rebuild it"
            ) from None
    manifest: dict[str, Any] = {
        "domain": {"name": domain, "provider": _provider_json(specs["domain"])},
        "backbone": {
            "name": backbone,
            "config": dict(backbone_config),
            "provider": _provider_json(specs["backbone"]),
        },
        "task": {
            "name": task,
            "config": dict(task_config),
            "provider": _provider_json(specs["task"]),
        },
        "label_names": [str(n) for n in label_names],
        "preprocessing": dict(preprocessing),
        "strategy": dict(strategy),
        "metrics": dict(metrics),
        "data_fingerprints": dict(data_fingerprints),
        "extra": dict(extra or {}),
    }
    manifest["plugins"] = {
        entry["provider"]["distribution"]: entry["provider"]["version"]
        for entry in (manifest["domain"], manifest["backbone"], manifest["task"])
        if entry["provider"]["distribution"]
    }
    return write_model(folder, model, manifest)


def _missing_plugin(kind: str, entry: Mapping[str, Any], exc: Exception) -> ArtifactError:
    provider = entry.get("provider") or {}
    dist = provider.get("distribution")
    version = provider.get("version")
    if dist:
        wanted = f"{dist}=={version}" if version else dist
        hint = (
            f"it came from the plugin distribution {dist!r} (version {version}): install it "
            f"(pip install {wanted!r}), or check that LEPTON_PLUGINS / LEPTON_DISABLE_PLUGINS "
            "do not exclude it"
        )
    else:
        hint = "the manifest does not say which plugin provided it"
    return ArtifactError(
        f"this model needs the {kind} {entry.get('name')!r}, which is not registered ({exc}); "
        f"{hint}"
    )


def _check_versions(manifest: Mapping[str, Any], specs: Mapping[str, Spec]) -> None:
    for kind, spec in specs.items():
        saved = (manifest[kind].get("provider") or {}).get("version")
        have = spec.provider.version if spec.provider else None
        if saved and have and saved != have:
            warnings.warn(
                f"the model's {kind} {spec.name!r} was saved with "
                f"{spec.provider.distribution if spec.provider else '?'} {saved}, "
                f"this process has {have}; predictions may differ",
                stacklevel=3,
            )


@names_plugins("loading the model")
def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Predictor:
    """Load a saved model folder and return a :class:`Predictor`.

    Checks the manifest (and that it was not edited) and the weights' checksum, rebuilds the
    backbone (``pretrained=None``) and the head through the registry, then loads the
    safetensors weights (nothing is unpickled). A missing plugin is named with the
    distribution to install."""
    from lepton_platform.api.job import build_model

    source = read_weights(path)
    folder, manifest = source.path, source.manifest
    specs: dict[str, Spec] = {}
    for kind, getter in _GETTERS:
        entry = manifest[kind]
        try:
            specs[kind] = getter(str(entry["name"]))
        except UnknownNameError as exc:
            raise _missing_plugin(kind, entry, exc) from None
    _check_versions(manifest, specs)
    try:
        domain = create_domain(manifest["domain"]["name"])
        backbone = create_backbone(
            manifest["backbone"]["name"], pretrained=None, **manifest["backbone"].get("config", {})
        )
        task = create_task(
            manifest["task"]["name"],
            label_names=source.label_names,
            **manifest["task"].get("config", {}),
        )
    except LeptonError as exc:
        raise ArtifactError(
            f"cannot rebuild the model saved in {folder}: {exc} (the installed plugins may be "
            f"incompatible with the ones it was saved with: {manifest.get('plugins')})"
        ) from exc
    model = build_model(backbone, task)
    try:
        missing, unexpected = model.load_state_dict(source.tensors, strict=False)
    except RuntimeError as exc:  # shapes differ
        raise ArtifactError(
            f"cannot load the weights of {folder} into the rebuilt model: {exc}; the backbone "
            f"or task plugin differs from the one it was saved with ({manifest.get('plugins')})"
        ) from exc
    missing = [k for k in missing if not _tied(model, k, source.tensors)]
    if missing or unexpected:
        raise ArtifactError(
            f"the weights of {folder} do not fit the rebuilt model: missing keys "
            f"{sorted(missing)[:8]}, unexpected keys {sorted(unexpected)[:8]}; the backbone or "
            f"task plugin differs from the one it was saved with ({manifest.get('plugins')})"
        )
    model.to(device).eval()
    return Predictor(
        model=model, task=task, domain=domain, manifest=manifest, device=device, folder=folder
    )


def _tied(model: TransferModel, key: str, tensors: Mapping[str, Any]) -> bool:
    """Whether a key missing from the file is a tied alias safetensors stored once."""
    state = model.state_dict()
    target = state.get(key)
    if target is None:
        return False
    return any(
        other in tensors and state[other].data_ptr() == target.data_ptr()
        for other in state
        if other != key
    )


# -- predicting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One input's prediction: the best label, every predicted label (one for single-label,
    those over the threshold for multi-label) and a score per label name."""

    label: str
    labels: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "labels": list(self.labels), "scores": dict(self.scores)}


class Predictor:
    """A loaded model that predicts on raw inputs (paths, strings, arrays) or on datasets in
    the standard schema. Build it with :func:`load`."""

    def __init__(
        self,
        *,
        model: TransferModel,
        task: Task,
        domain: Domain,
        manifest: Mapping[str, Any],
        device: str = "cpu",
        folder: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.domain = domain
        self.manifest = dict(manifest)
        self.device = device
        #: The model folder it was loaded from (``None`` when built in memory).
        self.folder = None if folder is None else Path(folder)
        self.preprocessor = model.backbone.preprocessor()

    @property
    def label_names(self) -> list[str]:
        return list(self.task.label_names)

    @names_plugins("predicting")
    def predict(self, inputs: Sequence[Any], *, batch_size: int = 32) -> list[Prediction]:
        """Predict raw inputs; they go through the domain's ``from_inputs`` and the backbone's
        preprocessing, exactly as training data did."""
        if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        if len(inputs) == 0:
            return []
        return self.predict_dataset(self.domain.from_inputs(list(inputs)), batch_size=batch_size)

    @names_plugins("predicting")
    def predict_batch(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int = 32,
        on_bad_input: str = "skip",
        progress: bool = False,
    ) -> BatchPrediction:
        """Predict many raw inputs, ``batch_size`` at a time, keeping going past bad ones.

        Each input is a raw value (a path, a string, a vector) or a :class:`NamedInput`
        (a value with the name it is reported by: its path, ``data.csv line 4``). An input
        that the domain cannot read, or that its preprocessing fails on, is a
        :class:`BadInput` with its name and the reason; ``on_bad_input="error"`` raises a
        :class:`~lepton_platform.errors.DataError` naming it instead. Under ``accelerate
        launch`` every process predicts a contiguous share and each gets the whole result,
        in input order. ``progress`` shows a bar (main process only)."""
        from lepton_platform.engine.distributed import processes

        if on_bad_input not in ("skip", "error"):
            raise ConfigError(f"on_bad_input must be 'skip' or 'error', got {on_bad_input!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        items = [
            item if isinstance(item, NamedInput) else NamedInput(_shown_name(item), item)
            for item in inputs
        ]
        procs = processes()
        world, rank = procs.num_processes, procs.process_index
        share = -(-len(items) // world) if items else 0
        mine = items[rank * share : (rank + 1) * share]
        offset = rank * share
        done: list[tuple[int, NamedInput, Prediction]] = []
        bad: list[BadInput] = []

        def refuse(index: int, item: NamedInput, reason: str) -> None:
            if on_bad_input == "error":
                raise DataError(
                    f"bad input {item.name}: {reason} (pass --on-bad-input skip to predict "
                    "the others)"
                )
            bad.append(BadInput(index, item.name, reason))

        readable: list[tuple[int, NamedInput]] = []
        for i, item in enumerate(mine, start=offset):
            if item.error is None:
                readable.append((i, item))
            else:
                refuse(i, item, item.error)
        chunks = range(0, len(readable), batch_size)
        bar = _bar(len(chunks), progress and rank == 0 and len(chunks) > 1)
        quiet = _QuietDatasets()
        try:
            for start in chunks:
                chunk = readable[start : start + batch_size]
                outcomes = self._predict_chunk([item for _, item in chunk], batch_size)
                for i, item, outcome in outcomes:
                    if isinstance(outcome, Prediction):
                        done.append((chunk[i][0], item, outcome))
                    else:
                        refuse(chunk[i][0], item, outcome)
                bar.update(1)
        finally:
            bar.close()
            quiet.close()
        if world > 1:
            done, bad = _gather_objects(done, bad)
        done.sort(key=lambda d: d[0])
        bad.sort(key=lambda b: b.index)
        return BatchPrediction(
            inputs=[d[1].name for d in done],
            indices=[d[0] for d in done],
            predictions=[d[2] for d in done],
            bad=bad,
            total=len(items),
        )

    def _predict_chunk(
        self, chunk: Sequence[NamedInput], batch_size: int
    ) -> list[tuple[int, NamedInput, Prediction | str]]:
        """The predictions of a chunk of inputs; when reading or preprocessing the chunk
        fails, each input is tried on its own so that only the bad ones are left out."""
        try:
            predictions = self._predict_values([c.value for c in chunk], batch_size)
        except Exception as exc:  # a domain's reader or decoder: any error names the input
            if len(chunk) == 1:
                return [(0, chunk[0], _reason(exc))]
        else:
            return [(i, item, predictions[i]) for i, item in enumerate(chunk)]
        out: list[tuple[int, NamedInput, Prediction | str]] = []
        for i, item in enumerate(chunk):
            try:
                out.append((i, item, self._predict_values([item.value], batch_size)[0]))
            except Exception as exc:
                out.append((i, item, _reason(exc)))
        return out

    def _predict_values(self, values: list[Any], batch_size: int) -> list[Prediction]:
        import numpy as np

        from lepton_platform.engine.predict import predict

        ds = self.domain.from_inputs(values)
        prepared = self._prepare(ds, batch_size)
        out = predict(self.model, prepared, self.preprocessor, batch_size=batch_size,
                      device=self.device)  # fmt: skip
        return self.predictions(np.asarray(out.outputs))

    def predict_dataset(self, ds: datasets.Dataset, *, batch_size: int = 32) -> list[Prediction]:
        """Predict every row of a dataset in the standard schema (its label column, if any,
        is ignored)."""
        return self.predictions(self.logits(ds, batch_size=batch_size))

    @names_plugins("predicting")
    def logits(self, ds: datasets.Dataset, *, batch_size: int = 32) -> np.ndarray:
        """The model's raw outputs ``(rows, num_labels)`` for a dataset in the standard schema,
        through the one prediction function."""
        import numpy as np

        from lepton_platform.engine.predict import predict

        if len(ds) == 0:
            return np.zeros((0, self.task.num_labels), dtype=np.float32)
        inputs = ds.remove_columns([c for c in ("label",) if c in ds.column_names])
        prepared = self._prepare(inputs, batch_size)
        out = predict(
            self.model, prepared, self.preprocessor, batch_size=batch_size, device=self.device
        )
        return out.outputs

    def logits_dataset(
        self, ds: datasets.Dataset, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, labels)`` for a dataset in the standard schema; ``labels`` is ``None``
        when it has no ``label`` column."""
        import numpy as np

        labels = np.asarray(ds["label"]) if "label" in ds.column_names else None
        return self.logits(ds, batch_size=batch_size), labels

    def _prepare(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        from lepton_platform.data.schema import STANDARD_COLUMNS

        missing = [c for c in self.preprocessor.input_columns if c not in ds.column_names]
        if missing:
            raise DataError(
                f"the model reads column(s) {missing} that the data lacks (it has "
                f"{ds.column_names}); is the data from another domain than "
                f"{self.manifest['domain']['name']!r}?"
            )
        remove = [c for c in ds.column_names if c not in STANDARD_COLUMNS]
        return ds.map(
            self.preprocessor.transform,
            batched=True,
            batch_size=batch_size,
            remove_columns=remove,
            keep_in_memory=True,
            load_from_cache_file=False,
            desc=None,
        )

    def predictions(self, logits: np.ndarray) -> list[Prediction]:
        """The :class:`Prediction` of each row of logits."""
        import torch

        if logits.shape[0] == 0:
            return []
        predicted, scores = self.task.predict(torch.from_numpy(logits))
        names = self.task.label_names
        out: list[Prediction] = []
        for row in range(logits.shape[0]):
            row_scores = [float(v) for v in scores[row].tolist()]
            best = names[max(range(len(names)), key=lambda i: row_scores[i])]
            if self.task.multi_label:
                chosen = tuple(n for n, v in zip(names, predicted[row].tolist(), strict=True) if v)
            else:
                chosen = (names[int(predicted[row])],)
            out.append(
                Prediction(
                    label=best,
                    labels=chosen,
                    scores=dict(zip(names, row_scores, strict=True)),
                )
            )
        return out


# -- many inputs: files, folders, tables, standard input ------------------------------------------


@dataclass(frozen=True)
class NamedInput:
    """A raw input and the name it is reported by (a path, ``data.csv line 4``, the text);
    ``error`` says why it cannot be predicted when that is known before reading it (a table
    row without the column)."""

    name: str
    value: Any
    error: str | None = None


@dataclass(frozen=True)
class BadInput:
    """An input that could not be predicted: its position among the inputs, its name and why."""

    index: int
    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "input": self.name, "error": self.reason}


@dataclass
class BatchPrediction:
    """What :meth:`Predictor.predict_batch` returns: the predicted inputs' names, positions
    and predictions (in input order), the bad inputs and how many there were in all."""

    inputs: list[str]
    indices: list[int]
    predictions: list[Prediction]
    bad: list[BadInput]
    total: int

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready record per predicted input: ``input``, ``label``, ``labels``,
        ``scores``."""
        return [
            {"input": name, **p.to_json()}
            for name, p in zip(self.inputs, self.predictions, strict=True)
        ]

    def records(self) -> list[dict[str, Any]]:
        """One record per input, in input order: the predicted ones as in :meth:`rows`, the
        bad ones as ``{"input": name, "error": reason}``."""
        keyed = [(i, row) for i, row in zip(self.indices, self.rows(), strict=True)]
        keyed += [(b.index, {"input": b.name, "error": b.reason}) for b in self.bad]
        return [row for _, row in sorted(keyed, key=lambda item: item[0])]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "predicted": len(self.predictions),
            "predictions": self.rows(),
            "bad": [b.to_json() for b in self.bad],
        }


#: Table files whose rows are inputs (``--column`` names the column).
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")


def collect_inputs(
    sources: Sequence[str | os.PathLike[str]],
    *,
    extensions: Sequence[str] = (),
    domain: str = "this",
    column: str | Sequence[str] | None = None,
    strings: bool = False,
    stdin: IO[str] | None = None,
) -> list[NamedInput]:
    """The inputs that ``sources`` name, in order, each with its name:

    - a folder: every file under it (recursively, sorted, hidden ones left out) whose name
      ends with one of ``extensions`` (the domain's
      :attr:`~lepton_platform.domains.Domain.input_extensions`);
    - a ``.csv``, ``.tsv`` or ``.jsonl`` file: one input per row, the value of ``column``
      (several columns: the list of their values, such as a vector or a text pair); a
      relative path there is read from the table's folder;
    - ``"-"``: one input per non-empty line of ``stdin`` (standard input);
    - another file: the file itself;
    - ``'[0.5, 1.2]'``: a JSON list of numbers (vector domains);
    - with ``strings=True``, every source that is not ``"-"`` is a string input (texts):
      strings are never guessed from a name that is not a file.

    A source that is none of these raises :class:`~lepton_platform.errors.DataError`
    naming it."""
    import sys

    columns = [column] if isinstance(column, str) else list(column or [])
    suffixes = tuple(e.lower() for e in extensions)
    out: list[NamedInput] = []
    for source in sources:
        text = os.fspath(source)
        if text == "-":
            stream = stdin if stdin is not None else sys.stdin
            for line in stream:
                value = line.rstrip("\r\n")
                if value.strip():
                    out.append(NamedInput(_shown_name(value), value if strings else _value(value)))
            continue
        if strings:
            out.append(NamedInput(text, text))
            continue
        path = Path(text)
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError:  # a name too long for a path: a value, not a file
            is_dir = is_file = False
        if is_dir:
            if not suffixes:
                raise DataError(
                    f"{text} is a folder, but the {domain} domain reads no files as inputs; "
                    "give the inputs as a table (--column), on standard input (-) or as "
                    "strings (--text)"
                )
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.lower().endswith(suffixes)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(
                    f"{text}: no file ending in {', '.join(suffixes)} under it (the {domain} "
                    "domain's inputs)"
                )
            out.extend(NamedInput(str(p), str(p)) for p in found)
        elif (
            is_file
            and path.suffix.lower() in TABLE_SUFFIXES
            and path.suffix.lower() not in suffixes
        ):
            out.extend(_table_inputs(path, columns))
        elif is_file:
            if not suffixes:
                raise DataError(
                    f"{text} is a file, but the {domain} domain reads no files as inputs; give "
                    "strings with --text (or - to read one per line from standard input), or a "
                    ".csv / .jsonl table with --column"
                )
            out.append(NamedInput(text, text))
        else:
            value = _value(text)
            if value is text:
                raise DataError(
                    f"{text!r}: no such file or folder (to predict strings, pass --text; for "
                    "vectors, a JSON list such as '[0.5, 1.2]')"
                )
            out.append(NamedInput(_shown_name(text), value))
    return out


@names_plugins("predicting")
def predict(
    model: str | os.PathLike[str] | Predictor,
    inputs: Sequence[Any],
    *,
    column: str | Sequence[str] | None = None,
    strings: bool = False,
    batch_size: int = 32,
    on_bad_input: str = "skip",
    progress: bool = False,
    stdin: IO[str] | None = None,
) -> BatchPrediction:
    """Predict many inputs with a saved model: ``lepton predict`` as Python.

    ``model`` is a model folder or a :class:`Predictor`; ``inputs`` are sources as
    :func:`collect_inputs` reads them (files, folders, tables with ``column``, ``"-"``, or
    strings with ``strings=True``). Bad inputs are skipped and listed (``on_bad_input="error"``
    stops at the first). Under ``accelerate launch`` the main process reads the inputs, every
    process predicts its share and each gets the whole result, in input order::

        >>> result = predict("runs/cats/model", ["photos/"])            # doctest: +SKIP
        >>> result.rows()[0]["label"], [b.name for b in result.bad]     # doctest: +SKIP
    """
    from lepton_platform.engine.distributed import broadcast, is_main_process, processes

    predictor = model if isinstance(model, Predictor) else load(model, device=process_device())
    items: list[NamedInput] | str | None = None
    if is_main_process():
        try:
            items = collect_inputs(
                inputs,
                extensions=predictor.domain.input_extensions,
                domain=repr(predictor.manifest["domain"]["name"]),
                column=column,
                strings=strings,
                stdin=stdin,
            )
        except DataError as exc:
            if processes().num_processes == 1:
                raise
            items = str(exc)
    items = broadcast(items)
    if isinstance(items, str):
        raise DataError(items)
    assert items is not None
    return predictor.predict_batch(
        items, batch_size=batch_size, on_bad_input=on_bad_input, progress=progress
    )


def process_device() -> str:
    """This process's device (under ``accelerate launch``, its own GPU; else the default)."""
    from lepton_platform.engine.distributed import processes

    return str(processes().device)


def _value(text: str) -> Any:
    """A JSON list of numbers as a list; anything else as it is."""
    import json

    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return text
        if isinstance(value, list):
            return value
    return text


def _shown_name(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else os.fspath(value)
        if isinstance(value, os.PathLike)
        else repr(value)
    )
    return text if len(text) <= 80 else text[:77] + "..."


def _table_inputs(path: Path, columns: list[str]) -> list[NamedInput]:
    """One input per row of a CSV, TSV or JSONL file: the value of the column(s)."""
    import csv
    import json

    rows: list[tuple[int, Any]] = []
    header: list[str] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".jsonl":
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((number, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path} line {number}: not JSON ({exc.msg})") from None
            else:
                reader = csv.DictReader(
                    handle, dialect="excel-tab" if path.suffix.lower() == ".tsv" else "excel"
                )
                header = list(reader.fieldnames or [])
                rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    if not columns:
        if rows and all(not isinstance(r, Mapping) for _, r in rows):
            return [NamedInput(f"{path} line {n}", _relative(path, v)) for n, v in rows]
        keys = header or sorted({k for _, r in rows if isinstance(r, Mapping) for k in r})
        raise DataError(
            f"{path} is a table: name the column that holds the inputs with --column "
            f"(it has {', '.join(keys) or 'no columns'})"
        )
    absent = [c for c in columns if header and c not in header]
    if absent:
        raise DataError(f"{path}: no column {absent[0]!r} (it has {', '.join(header)})")
    out: list[NamedInput] = []
    for number, row in rows:
        name = f"{path} line {number}"
        if not isinstance(row, Mapping):
            out.append(NamedInput(name, row, error=f"expected an object with {columns}"))
            continue
        missing = [c for c in columns if row.get(c) is None]
        if missing:
            have = ", ".join(k for k, v in row.items() if v is not None)
            reason = f"no value in column {missing[0]!r} (the row has {have or 'none'})"
            out.append(NamedInput(name, None, error=reason))
            continue
        values = [_relative(path, row[c]) for c in columns]
        out.append(NamedInput(name, values[0] if len(values) == 1 else values))
    return out


def _relative(table: Path, value: Any) -> Any:
    """A relative file path in a table, read from the table's folder when it exists there."""
    if isinstance(value, str) and value and not os.path.isabs(value):
        try:
            candidate = table.parent / value
            if candidate.is_file():
                return str(candidate)
        except OSError:
            pass
    return value


def _reason(exc: BaseException) -> str:
    import re

    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^input \d+( \([^)]*\))?: ", "", text)  # the input is named already
    if not isinstance(exc, LeptonError):
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


def _gather_objects(done: list[Any], bad: list[Any]) -> tuple[list[Any], list[Any]]:
    """Every process's predicted and bad inputs, concatenated in process order."""
    from accelerate.utils import gather_object

    all_done: list[Any] = []
    all_bad: list[Any] = []
    for part_done, part_bad in gather_object([(done, bad)]):
        all_done.extend(part_done)
        all_bad.extend(part_bad)
    return all_done, all_bad


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _QuietDatasets:
    """Turns ``datasets``' own progress bars off (one per chunk) until :meth:`close`."""

    def __init__(self) -> None:
        import datasets

        self.was_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def close(self) -> None:
        import datasets

        if self.was_on:
            datasets.enable_progress_bars()


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="batch", leave=False, dynamic_ncols=True)
