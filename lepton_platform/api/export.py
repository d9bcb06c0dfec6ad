"""Models out of Lepton: a saved model exported to ONNX, TorchScript or its backbone library's
own format, checked against the Lepton model, with a model card.

    >>> import lepton_platform as lp
    >>> result = lp.export("runs/cats/model", "exports/cats", format="onnx")   # doctest: +SKIP
    >>> result.checked_with, result.max_abs_diff < 1e-4                         # doctest: +SKIP
    ('onnxruntime', True)

- ``onnx``: ``model.onnx`` through ``torch.onnx`` (``torch.export``), with a dynamic batch axis
  and the backbone's other dynamic axes (the sequence length of text, the number of samples of
  speech: :meth:`~lepton_platform.models.Backbone.export_inputs`), checked with ``onnxruntime``;
- ``torchscript``: ``model.pt`` traced with ``torch.jit.trace``, checked after reloading it;
- ``hf``: the backbone's own library's format
  (:meth:`~lepton_platform.models.Backbone.hub_export`): a transformers
  ``*ForSequenceClassification`` / ``*ForAudioClassification`` with the label names and the
  tokenizer or feature extractor for text and speech, a torchvision state dict with the
  preprocessing as JSON for images; checked after loading it back through that library.

Every check compares the export's logits with the Lepton model's on a batch whose dynamic axes
differ from the traced one (so a graph that baked a size in is caught). Every export folder holds
``lepton_export.json`` (inputs, dynamic axes, label names, how scores are made, the
preprocessing) and a model card, ``README.md``: data fingerprints, strategy, metrics with their
intervals and the baselines beside them, and how to use the files.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform._version import __version__
from lepton_platform.api.predictor import Predictor, load
from lepton_platform.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import torch

    from lepton_platform.models import Backbone, ExportInputs

__all__ = ["FORMATS", "ExportResult", "export", "model_card"]

#: The formats :func:`export` writes.
FORMATS = ("onnx", "torchscript", "hf")
#: The file every export folder holds (what was exported, and how to feed it).
EXPORT_FILE = "lepton_export.json"
_PIPELINES = {
    "text": "text-classification",
    "audio": "audio-classification",
    "speech": "audio-classification",
    "image": "image-classification",
}


@dataclass
class ExportResult:
    """An export: its folder and files, and how it was checked (``max_abs_diff``: the largest
    difference between its logits and the Lepton model's on the check batch)."""

    format: str
    folder: Path
    files: list[str]
    checked_with: str
    max_abs_diff: float
    inputs: list[str] = field(default_factory=list)
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "folder": str(self.folder),
            "files": list(self.files),
            "checked_with": self.checked_with,
            "max_abs_diff": self.max_abs_diff,
            "inputs": list(self.inputs),
            "dynamic_axes": {
                k: {str(a): n for a, n in v.items()} for k, v in self.dynamic_axes.items()
            },
        }


def export(
    model: str | os.PathLike[str] | Predictor,
    output: str | os.PathLike[str] | None = None,
    *,
    format: str = "onnx",
    overwrite: bool = False,
    atol: float = 1e-4,
    opset: int | None = None,
) -> ExportResult:
    """Export a saved model (a folder, or a loaded :class:`Predictor`) to ``output`` (default:
    ``export-<format>`` beside the model folder) as ``format`` (one of :data:`FORMATS`), check
    it against the Lepton model (logits within ``atol``, relative to their scale) and write
    its model card. An existing export folder is replaced only with ``overwrite``; a folder
    that is not an export is never replaced.

    A format that the backbone cannot produce raises :class:`ArtifactError` naming the format,
    the reason and the formats to try instead."""
    import torch

    from lepton_platform._io import AtomicFolder
    from lepton_platform.engine.distributed import is_main_process, wait_for_everyone

    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if atol <= 0:
        raise ConfigError(f"atol must be positive, got {atol}")
    predictor = model if isinstance(model, Predictor) else load(model)
    target = _target(predictor, output, format)
    _check_target(target, overwrite)
    if not is_main_process():  # one process writes; the others wait for it
        wait_for_everyone()
        return _read_result(target)
    device = next(predictor.model.parameters()).device
    transfer_model = predictor.model.to("cpu").eval()  # traced on the CPU, put back after
    backbone: Backbone = transfer_model.backbone
    try:
        with torch.no_grad(), AtomicFolder(target) as tmp:
            usage = ""
            if format == "hf":
                checked_with, diff, inputs, usage = _export_hub(predictor, tmp.path, atol)
                axes: dict[str, dict[int, str]] = {}
            else:
                spec = backbone.export_inputs()
                inputs, axes = list(spec.example), dict(spec.dynamic_axes)
                if format == "onnx":
                    checked_with, diff = _export_onnx(transfer_model, spec, tmp.path, atol, opset)
                else:
                    checked_with, diff = _export_torchscript(transfer_model, spec, tmp.path, atol)
            result = ExportResult(
                format=format,
                folder=target,
                files=[],
                checked_with=checked_with,
                max_abs_diff=diff,
                inputs=inputs,
                dynamic_axes=axes,
            )
            _write_export_json(tmp.path, predictor, result)
            (tmp.path / "README.md").write_text(
                model_card(predictor, result, usage=_usage(result, usage)),
                encoding="utf-8",
            )
            result.files = sorted(
                p.relative_to(tmp.path).as_posix() for p in tmp.path.rglob("*") if p.is_file()
            )
            tmp.commit()
    except _Unsupported as exc:
        raise ArtifactError(
            f"cannot export {_name(predictor)} as {format}: {exc}; "
            f"{_suggest(backbone, format, exc.tried)}"
        ) from None
    finally:
        predictor.model.to(device)
        wait_for_everyone()
    return result


# ----------------------------------------------------------------------------- the formats


class _Unsupported(Exception):
    def __init__(self, reason: str, tried: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.tried = tuple(tried)


def _positional(model: torch.nn.Module, names: Sequence[str]) -> torch.nn.Module:
    """``model(**inputs)`` as a module taking the inputs in order (what tracing needs)."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(**dict(zip(names, tensors, strict=True)))
            return out

    return Positional().eval()


def _compare(got: Any, want: torch.Tensor, atol: float, what: str) -> float:
    import numpy as np

    got_array = np.asarray(got, dtype=np.float64)
    want_array = want.detach().double().cpu().numpy()
    if got_array.shape != want_array.shape:
        raise _Unsupported(
            f"{what} gives outputs of shape {got_array.shape} where the model gives "
            f"{want_array.shape}"
        )
    diff = float(np.abs(got_array - want_array).max()) if got_array.size else 0.0
    scale = max(1.0, float(np.abs(want_array).max()) if want_array.size else 1.0)
    if not diff <= atol * scale:
        raise _Unsupported(
            f"{what} differs from the Lepton model by up to {diff:.3g} in the logits (allowed: "
            f"{atol * scale:.3g}) on inputs whose dynamic axes differ from the traced ones; the "
            "graph does not follow the model (dynamic control flow, or a size fixed while "
            "tracing)"
        )
    return diff


def _export_onnx(
    model: torch.nn.Module, spec: ExportInputs, folder: Path, atol: float, opset: int | None
) -> tuple[str, float]:
    import torch

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not _installed(m)]
    if missing:
        raise ConfigError(
            f"the onnx export needs {', '.join(missing)}: pip install {' '.join(missing)} "
            "(or pip install 'lepton-platform[export]')"
        )
    names = list(spec.example)
    dims: dict[str, Any] = {}

    def dim(label: str) -> Any:
        if label not in dims:
            dims[label] = torch.export.Dim(label.replace("-", "_"), min=1)
        return dims[label]

    shapes = (
        tuple(
            {axis: dim(lbl) for axis, lbl in spec.dynamic_axes.get(n, {}).items()} for n in names
        ),
    )
    wrapper = _positional(model, names)
    example = tuple(spec.example[n] for n in names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                example,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # torch.export reports through many error types
        raise _Unsupported(f"torch.onnx could not export the model ({_short(exc)})") from None
    assert program is not None
    path = folder / "model.onnx"
    program.save(str(path), external_data=_large(model))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: spec.check[n].cpu().numpy() for n in names}
    got = session.run(["logits"], feeds)[0]
    return "onnxruntime", _compare(got, model(**spec.check), atol, "the ONNX model")


def _export_torchscript(
    model: torch.nn.Module, spec: ExportInputs, folder: Path, atol: float
) -> tuple[str, float]:
    import torch

    names = list(spec.example)
    wrapper = _positional(model, names)
    example = tuple(spec.example[n] for n in names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(wrapper, example, check_trace=False)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise _Unsupported(f"torch.jit.trace could not trace it ({_short(exc)})") from None
    tracer = [str(w.message) for w in caught if w.category.__name__ == "TracerWarning"]
    path = folder / "model.pt"
    traced.save(str(path))
    loaded = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    try:
        got = loaded(*[spec.check[n] for n in names])
        diff = _compare(got, model(**spec.check), atol, "the traced model")
    except _Unsupported as exc:
        hint = f" (the tracer warned: {tracer[0][:200]})" if tracer else ""
        raise _Unsupported(f"{exc}{hint}") from None
    except Exception as exc:
        raise _Unsupported(
            f"the traced model fails on inputs of other sizes ({_short(exc)}); tracing fixed "
            "a size or a branch"
        ) from None
    return "torch.jit.load", diff


def _export_hub(
    predictor: Predictor, folder: Path, atol: float
) -> tuple[str, float, list[str], str]:
    from lepton_platform.models import ExportUnsupported

    model = predictor.model
    backbone = model.backbone
    try:
        linear = _linear_head(model.head)
        hub = backbone.hub_export(
            linear, predictor.label_names, multi_label=bool(predictor.task.multi_label)
        )
    except ExportUnsupported as exc:
        raise _Unsupported(str(exc), tried=("hf",)) from None
    hub.write(folder)
    check = hub.check if hub.check is not None else backbone.export_inputs().check
    try:
        run = hub.load(folder)
        got = run(check)
    except Exception as exc:
        raise _Unsupported(
            f"{hub.library} could not load what was written ({_short(exc)})", tried=("hf",)
        ) from None
    diff = _compare(got, model(**check), atol, f"the {hub.library} model")
    return hub.library, diff, list(check), hub.usage


def _linear_head(head: torch.nn.Module) -> torch.nn.Linear:
    """The task head as one linear layer (dropout, a no-op in inference, is passed over)."""
    import torch

    if isinstance(head, torch.nn.Linear):
        return head
    if isinstance(head, torch.nn.Sequential):
        layers = [m for m in head if not isinstance(m, torch.nn.Dropout | torch.nn.Identity)]
        if len(layers) == 1 and isinstance(layers[0], torch.nn.Linear):
            return layers[0]
    from lepton_platform.models import ExportUnsupported

    raise ExportUnsupported(
        f"the task head ({type(head).__name__}) is not one linear layer, which the other "
        "library's classifier needs"
    )


def _suggest(backbone: Backbone, failed: str, tried: Sequence[str]) -> str:
    from lepton_platform.models import Backbone as Base

    has_hub = type(backbone).hub_export is not Base.hub_export
    others = [f for f in FORMATS if f != failed and f not in tried and (f != "hf" or has_hub)]
    return f"try --format {' or '.join(others)}" if others else "no other format is known to work"


# ----------------------------------------------------------------------------- files


def _target(predictor: Predictor, output: str | os.PathLike[str] | None, format: str) -> Path:
    if output is not None:
        return Path(output).expanduser().absolute()
    if predictor.folder is None:
        raise ConfigError("export(): give the output folder (the model was not loaded from one)")
    return predictor.folder.parent / f"export-{format}"


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ArtifactError(f"{target} exists and is not a folder; choose another output")
    if not any(target.iterdir()):
        return
    if not (target / EXPORT_FILE).is_file():
        raise ArtifactError(
            f"{target} exists and is not a Lepton export folder (no {EXPORT_FILE}); choose "
            "another output or remove it yourself"
        )
    if not overwrite:
        raise ArtifactError(f"{target} already holds an export; pass --overwrite to replace it")


def _read_result(target: Path) -> ExportResult:
    data = json.loads((target / EXPORT_FILE).read_text(encoding="utf-8"))
    check = data.get("check") or {}
    return ExportResult(
        format=str(data["format"]),
        folder=target,
        files=sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()),
        checked_with=str(check.get("with", "")),
        max_abs_diff=float(check.get("max_abs_diff", 0.0)),
        inputs=list(data.get("inputs", [])),
    )


def _write_export_json(folder: Path, predictor: Predictor, result: ExportResult) -> None:
    manifest = predictor.manifest
    multi = bool(predictor.task.multi_label)
    data = {
        "kind": "lepton-export",
        "format": result.format,
        "platform_version": __version__,
        "source": {
            "folder": None if predictor.folder is None else str(predictor.folder),
            "weights_sha256": (manifest.get("weights") or {}).get("sha256"),
        },
        "inputs": result.inputs,
        "dynamic_axes": {
            k: {str(a): n for a, n in v.items()} for k, v in result.dynamic_axes.items()
        },
        "output": "logits",
        "scores": "sigmoid" if multi else "softmax",
        "label_names": predictor.label_names,
        "domain": manifest["domain"]["name"],
        "backbone": manifest["backbone"]["name"],
        "task": manifest["task"]["name"],
        "preprocessing": manifest.get("preprocessing", {}),
        "check": {"with": result.checked_with, "max_abs_diff": result.max_abs_diff},
    }
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    (folder / EXPORT_FILE).write_text(text, encoding="utf-8")


def _usage(result: ExportResult, hub_usage: str) -> str:
    """A short Python example of using the export (the backbone's own for ``hf``)."""
    path = str(result.folder)
    if result.format == "hf":
        return hub_usage.replace("{path}", path)
    if result.format == "onnx":
        feeds = ", ".join(f'"{n}": ...' for n in result.inputs)
        return (
            "import onnxruntime\n\n"
            f'session = onnxruntime.InferenceSession("{path}/model.onnx")\n'
            f'logits = session.run(["logits"], {{{feeds}}})[0]  # int64 ids / float32 '
            "values, as lepton_export.json's preprocessing makes them\n"
        )
    args = ", ".join(result.inputs)
    return (
        "import torch\n\n"
        f'model = torch.jit.load("{path}/model.pt")\n'
        f"logits = model({args})  # tensors in this order, as the preprocessing makes them\n"
    )


# ----------------------------------------------------------------------------- the model card


def model_card(predictor: Predictor, result: ExportResult, *, usage: str = "") -> str:
    """The export's ``README.md``, as the Hugging Face Hub shows it: what the model is, how it
    was trained (strategy, data fingerprints), its metrics with their confidence intervals and
    the baselines beside them, how the export was checked, and how to use it."""
    manifest = predictor.manifest
    domain = manifest["domain"]["name"]
    backbone = manifest["backbone"]["name"]
    task = manifest["task"]["name"]
    names = predictor.label_names
    scores = (
        "sigmoid per label (multi-label)" if predictor.task.multi_label else "softmax over labels"
    )
    library = {"onnx": "onnx", "torchscript": "pytorch"}.get(result.format, result.checked_with)
    tags = ["lepton", str(domain), str(task), "transfer-learning"]
    pipeline = _PIPELINES.get(_modality(str(domain)) or "")
    front = [
        "---",
        f"library_name: {library}",
        "tags:",
        *(f"- {t}" for t in tags),
        *([f"pipeline_tag: {pipeline}"] if pipeline else []),
        "---",
        "",
    ]
    lines = [
        *front,
        f"# {_name(predictor)}",
        "",
        f"A {task} model for the {domain} domain on the {backbone} backbone, trained with "
        f"Lepton {manifest.get('platform_version', '?')} and exported as **{result.format}** "
        f"by Lepton {__version__}.",
        "",
        f"Checked with {result.checked_with}: the exported logits differ from the Lepton "
        f"model's by at most {result.max_abs_diff:.2g}.",
        "",
        "## Labels",
        "",
        ", ".join(f"`{n}`" for n in names),
        "",
        f"Scores: the {scores} of the logits.",
        "",
        "## Training",
        "",
        *_strategy_lines(manifest.get("strategy") or {}),
        "",
        "## Data fingerprints",
        "",
        *_fingerprint_lines(manifest.get("data_fingerprints") or {}),
        "",
        "## Metrics",
        "",
        *_metric_lines(manifest.get("metrics") or {}),
        "",
        "## Baselines",
        "",
        *_baseline_lines(manifest, predictor.folder),
        "",
        "## Use",
        "",
        "```python",
        usage.rstrip("\n"),
        "```",
        "",
        "Inputs are preprocessed as `lepton_export.json` records (`preprocessing`); "
        f"`lepton predict {predictor.folder or 'MODEL'} ...` predicts with the Lepton model "
        "itself.",
        "",
    ]
    return "\n".join(lines)


def _name(predictor: Predictor) -> str:
    folder = predictor.folder
    if folder is None:
        return "Lepton model"
    return folder.parent.name if folder.name == "model" and folder.parent.name else folder.name


def _modality(domain: str) -> str | None:
    from lepton_platform.errors import UnknownNameError
    from lepton_platform.registry import get_domain

    try:
        return str(get_domain(domain).modality)
    except (UnknownNameError, AttributeError):
        return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text.replace("|", "\\|")


def _strategy_lines(strategy: Mapping[str, Any]) -> list[str]:
    if not strategy:
        return ["The manifest records no strategy."]
    name = strategy.get("name", "?")
    params = strategy.get("params") or {k: v for k, v in strategy.items() if k != "name"}
    lines = [f"Strategy: **{name}**.", ""]
    if params:
        lines += ["| parameter | value |", "| --- | --- |"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in params.items()]
    return lines


def _fingerprint_lines(fingerprints: Mapping[str, Any]) -> list[str]:
    if not fingerprints:
        return ["The manifest records no data fingerprints."]
    lines = ["| data | fingerprint |", "| --- | --- |"]
    lines += [f"| {k} | `{_cell(v)}` |" for k, v in fingerprints.items()]
    return lines


def _metric_lines(metrics: Mapping[str, Any]) -> list[str]:
    rows: list[str] = []
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            continue
        ci = values.get("ci") if isinstance(values.get("ci"), Mapping) else None
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            interval = ""
            if ci and ci.get("key") == key:
                level = int(100 * float(ci.get("confidence", 0.95)))
                interval = f"{ci.get('low'):.4f} to {ci.get('high'):.4f} ({level}%, bootstrap)"
            rows.append(f"| {split} | {key} | {_cell(float(value))} | {interval} |")
    if not rows:
        return ["The manifest records no metrics."]
    return ["| split | metric | value | interval |", "| --- | --- | --- | --- |", *rows]


def _baseline_lines(manifest: Mapping[str, Any], folder: Path | None) -> list[str]:
    """The baselines measured beside this model: the manifest's ``extra.baselines``, or the
    comparison (``comparison.json``) whose folder holds the model."""
    extra = manifest.get("extra") or {}
    baselines = extra.get("baselines") if isinstance(extra, Mapping) else None
    if isinstance(baselines, Mapping) and baselines:
        lines = ["| baseline | metric | value |", "| --- | --- | --- |"]
        for name, values in baselines.items():
            for key, value in values.items() if isinstance(values, Mapping) else []:
                if isinstance(value, int | float):
                    lines.append(f"| {name} | {key} | {_cell(float(value))} |")
        return lines
    comparison = _comparison_of(folder)
    if comparison is not None:
        key = comparison.get("key") or comparison.get("metric")
        lines = [
            f"From the comparison beside this model ({key} on the test split, mean ± std over "
            f"seeds {comparison.get('seeds')}):",
            "",
            "| row | kind | mean | std | difference from the baselines (95% interval) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in comparison.get("rows", []):
            differences = "; ".join(
                f"{against}: {d['delta']:+.4f} "
                f"[{d.get('low', float('nan')):+.4f}, {d.get('high', float('nan')):+.4f}]"
                for against, d in (row.get("differences") or {}).items()
                if isinstance(d, Mapping) and d.get("delta") is not None
            )
            mean, std = _number(row.get("mean")), _number(row.get("std"))
            lines.append(
                f"| {row.get('name')} | {row.get('kind')} | {mean} | {std} | {differences or '-'} |"
            )
        return lines
    return [
        "No baseline was measured with this model. `lepton compare` trains the from-scratch "
        "baseline (and the source-only one, given a source model) on the same splits and "
        "reports each strategy's paired difference from them."
    ]


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _comparison_of(folder: Path | None) -> dict[str, Any] | None:
    if folder is None:
        return None
    for parent in list(folder.parents)[:3]:
        file = parent / "comparison.json"
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            return data if isinstance(data, dict) else None
    return None


# ----------------------------------------------------------------------------- helpers


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _large(model: torch.nn.Module) -> bool:
    """Whether the weights need ONNX's external data (the protobuf limit is 2 GB)."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return size > 1_800_000_000


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    first = text.split(". ")[0]
    return f"{type(exc).__name__}: {first[:300]}"
