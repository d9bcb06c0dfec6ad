"""Speed defaults decided from what the hardware does: the float32 matmul path and the memory
layout of convolutional models, each probed once and remembered.

- :func:`matmul_precision` resolves ``train.matmul_precision: auto``. On a CPU it times a GEMM
  of a transformer layer's shape at ``highest`` and at ``medium`` (on most x86 CPUs ``medium``
  routes float32 GEMMs through oneDNN instead of MKL's default path) and measures each one's
  error against float64; ``medium`` is chosen only when it is faster *and* its error stays at
  float32 level (where ``medium`` means bfloat16, on CPUs with AMX, its error is about 1e-3
  and it is refused). On a CUDA GPU: ``high`` (TF32 matmuls). The choice is kept in
  ``$LEPTON_CACHE_DIR/hardware.json`` per machine, torch version and thread count, so every
  run on one machine decides the same.
- :func:`channels_last` resolves ``train.channels_last: auto`` for a model and a batch: no
  convolution with 4-D weights, no probe (``False``); otherwise a few timed forward and
  backward passes of a copy of the model in both layouts (the way cuDNN's benchmark mode
  picks kernels), remembered per model configuration, input shapes and device.

Both report what they chose and why as a :class:`SpeedChoice`, which the run records.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lepton_platform._io import atomic_write_text
from lepton_platform.data.prepare import cache_dir

__all__ = [
    "SpeedChoice",
    "channels_last",
    "matmul_precision",
    "matmul_verdict",
    "uses_channels_last",
]

log = logging.getLogger(__name__)

#: Bump when a probe changes, so that choices made by an older probe are not reused.
PROBE_FORMAT = 1
#: ``medium`` is kept only when its relative error is at most this many times ``highest``'s
#: (float32 GEMMs that sum in another order differ by a small factor; bfloat16 by thousands).
ERROR_FACTOR = 8.0
#: ...and it is at least this much faster (timing noise below it is not worth a change).
MIN_GAIN = 1.05

_memo: dict[str, SpeedChoice] = {}


@dataclass(frozen=True)
class SpeedChoice:
    """One speed default: what was chosen, by what (``given``: the user's setting; ``probe``:
    measured here; ``cached``: measured earlier on this machine; ``rule``: no measurement
    needed) and the measurements."""

    name: str
    value: Any
    source: str
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "source": self.source,
            "reason": self.reason,
            "measured": self.measured,
        }


# -- matmul precision ----------------------------------------------------------------------------


def matmul_precision(setting: str, device: torch.device) -> SpeedChoice:
    """The float32 matmul precision to train with: ``setting`` itself unless it is ``auto``."""
    if setting != "auto":
        return SpeedChoice("matmul_precision", setting, "given", "train.matmul_precision")
    if device.type == "cuda":
        return SpeedChoice(
            "matmul_precision", "high", "rule", "a CUDA GPU: TF32 matmuls (float32 range)"
        )
    if device.type != "cpu":
        return SpeedChoice(
            "matmul_precision", "highest", "rule", f"no probe for {device.type} devices"
        )
    key = _machine_key("matmul")
    return _remembered(key, _probe_matmul)


def _probe_matmul() -> SpeedChoice:
    # the shape of a small transformer's feed-forward layer over a batch of token rows
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 384, generator=generator)
    b = torch.randn(384, 1536, generator=generator)
    exact = a.double() @ b.double()
    scale = float(exact.abs().max())
    previous = torch.get_float32_matmul_precision()
    errors: dict[str, float] = {}
    times: dict[str, list[float]] = {"highest": [], "medium": []}
    try:
        for precision in times:
            torch.set_float32_matmul_precision(precision)
            errors[precision] = float((a @ b).double().sub(exact).abs().max()) / scale
        for _ in range(7):  # interleaved, so that a change of load hits both alike
            for precision, spent in times.items():
                torch.set_float32_matmul_precision(precision)
                started = time.perf_counter()
                for _ in range(3):
                    a @ b
                spent.append(time.perf_counter() - started)
    finally:
        torch.set_float32_matmul_precision(previous)
    gain = statistics.median(times["highest"]) / statistics.median(times["medium"])
    return matmul_verdict(errors, gain)


def matmul_verdict(errors: Mapping[str, float], gain: float) -> SpeedChoice:
    """The choice from the probe's measurements: each precision's relative error against
    float64 and how many times faster ``medium`` ran than ``highest``."""
    exact_enough = errors["medium"] <= ERROR_FACTOR * max(errors["highest"], 1e-8)
    measured = {
        "relative_error": dict(errors),
        "speedup_medium": round(gain, 3),
        "threads": torch.get_num_threads(),
    }
    if exact_enough and gain >= MIN_GAIN:
        reason = f"medium is {gain:.2f}x faster at float32-level error here"
        return SpeedChoice("matmul_precision", "medium", "probe", reason, measured)
    if not exact_enough:
        reason = (
            f"medium's error ({errors['medium']:.1e}) is not float32-level "
            f"(highest: {errors['highest']:.1e}); it would reduce precision"
        )
    else:
        reason = f"medium is not faster here ({gain:.2f}x)"
    return SpeedChoice("matmul_precision", "highest", "probe", reason, measured)


# -- memory layout -------------------------------------------------------------------------------


def uses_channels_last(module: nn.Module) -> bool:
    """Whether a module's convolution weights are stored channels-last (its inputs should be
    too)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            weight = layer.weight
            return (
                weight.is_contiguous(memory_format=torch.channels_last)
                and not weight.is_contiguous()
            )
    return False


def channels_last(
    setting: bool | str,
    model: nn.Module,
    batch: Callable[[], Mapping[str, torch.Tensor]] | None,
    forward: Callable[[nn.Module, Mapping[str, torch.Tensor]], torch.Tensor],
    device: torch.device,
) -> SpeedChoice:
    """Whether to train ``model`` channels-last: ``setting`` itself unless it is ``auto``; for
    ``auto``, ``False`` without a 2-D convolution or a 4-D input, else the faster layout of a
    short timed probe of ``forward`` (returning a scalar loss) on ``batch()`` with a copy of
    the model (the model, its statistics and every random generator stay untouched)."""
    if setting != "auto":
        return SpeedChoice("channels_last", bool(setting), "given", "train.channels_last")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return SpeedChoice("channels_last", False, "rule", "no 2-D convolution in the model")
    example = None if batch is None else batch()
    if example is None or not any(
        isinstance(v, torch.Tensor) and v.ndim == 4 and v.is_floating_point()
        for v in example.values()
    ):
        return SpeedChoice("channels_last", False, "rule", "no 4-D input to convolve")
    shapes = {k: list(v.shape) for k, v in example.items() if isinstance(v, torch.Tensor)}
    signature = [
        type(model).__name__,
        [(n, list(p.shape)) for n, p in model.named_parameters()],
        sorted(shapes.items()),
    ]
    key = _machine_key("channels_last", device, signature)
    return _remembered(key, lambda: _probe_layout(model, example, forward, device, shapes))


def _probe_layout(
    model: nn.Module,
    example: Mapping[str, torch.Tensor],
    forward: Callable[[nn.Module, Mapping[str, torch.Tensor]], torch.Tensor],
    device: torch.device,
    shapes: dict[str, list[int]],
) -> SpeedChoice:
    times: dict[bool, list[float]] = {False: [], True: []}
    with _untouched(device):
        copies = {nhwc: copy.deepcopy(model).to(device) for nhwc in times}
        copies[True].to(memory_format=torch.channels_last)
        inputs = {nhwc: _layout(example, device, nhwc) for nhwc in times}
        for _round in range(4):  # the first round warms up and is not counted
            for nhwc, spent in times.items():
                copies[nhwc].train()
                started = time.perf_counter()
                loss = forward(copies[nhwc], inputs[nhwc])
                loss.backward()  # type: ignore[no-untyped-call]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if _round:
                    spent.append(time.perf_counter() - started)
                copies[nhwc].zero_grad(set_to_none=True)
    gain = statistics.median(times[False]) / statistics.median(times[True])
    measured = {"speedup_channels_last": round(gain, 3), "input_shapes": shapes}
    if gain >= MIN_GAIN:
        reason = f"channels-last is {gain:.2f}x faster for this model and input here"
        return SpeedChoice("channels_last", True, "probe", reason, measured)
    reason = f"channels-last is not faster for this model and input here ({gain:.2f}x)"
    return SpeedChoice("channels_last", False, "probe", reason, measured)


def _layout(
    batch: Mapping[str, torch.Tensor], device: torch.device, nhwc: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device)
        if nhwc and value.ndim == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


@contextlib.contextmanager
def _untouched(device: torch.device) -> Iterator[None]:
    """Every random generator as it was before (dropout in a probe must not shift a run)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


# -- remembering ---------------------------------------------------------------------------------


def _machine_key(kind: str, device: torch.device | None = None, extra: Any = None) -> str:
    parts = [
        kind,
        PROBE_FORMAT,
        torch.__version__,
        platform.machine(),
        platform.processor() or _cpu_model(),
        os.cpu_count(),
        torch.get_num_threads(),
        None if device is None else str(device),
        extra,
    ]
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _store() -> Path:
    return cache_dir() / "hardware.json"


def _remembered(key: str, probe: Callable[[], SpeedChoice]) -> SpeedChoice:
    """A choice made earlier in this process or on this machine, or a fresh probe (saved)."""
    if key in _memo:
        return _memo[key]
    path = _store()
    saved = _read(path)
    entry = saved.get(key)
    if isinstance(entry, dict) and {"name", "value", "reason"} <= set(entry):
        choice = SpeedChoice(
            str(entry["name"]),
            entry["value"],
            "cached",
            str(entry["reason"]),
            dict(entry.get("measured") or {}),
        )
    else:
        choice = probe()
        saved[key] = {"name": choice.name, **choice.to_json()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(saved, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only cache: the choice holds for this process
            log.warning("could not remember the speed probe in %s: %s", path, exc)
        log.info("%s: %s (%s)", choice.name, choice.value, choice.reason)
    _memo[key] = choice
    return choice


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent, or damaged: probed again and rewritten
    return data if isinstance(data, dict) else {}
