"""The conformance suite: point it at a plugin and it checks every spec the plugin registers.

::

    from lepton_platform.testing import PluginConformance

    class TestTabularConformance(PluginConformance):
        distribution = "lepton-tabular"      # an installed distribution, or:
        # plugin = my_package.plugin         # a plugin module registered in process

The pytest plugin (:mod:`lepton_platform.testing.plugin`) parametrises each ``test_*`` method
over the specs of one kind, the test id being the spec's name. What is checked:

- every spec: valid name, JSON-ready ``summary()``, a description, provider = the distribution;
  the plugin loads with no error and no warning, and importing its modules in a fresh process
  imports no heavy library (torch, transformers, torchvision, datasets);
- domains: ``example_dataset`` gives the standard schema, ``from_inputs`` reads raw inputs;
- backbones, built with ``tiny_options`` and ``pretrained=None`` on CPU: the backbone's domain
  is registered; forward shape ``(batch, feature_dim)``, finite gradients on every trainable
  parameter, layer groups holding every parameter exactly once, ``config()`` rebuilding the
  same architecture (weights saved with safetensors and reloaded give the same outputs), the
  domain's examples through ``preprocessor().transform`` (``datasets.map``), ``collate`` and
  forward; its options known, so a misspelled one is refused by name; the artifact round trip
  (train one epoch, save, ``lp.load``, predict raw inputs); transfer from a saved Lepton model
  through the core service (every tensor loaded, a tampered file refused);
- tasks: head, finite differentiable loss, prediction shapes, the label space;
- metrics: ``compute()`` on a tiny example returns a dict of numbers holding the spec's
  headline key, and the spec's direction holds on a perfect and a poor prediction;
- commands: ``configure`` works on a fresh ``argparse`` parser;
- strategies: built with their defaults, applied to the kit's tiny model
  (:mod:`lepton_platform.testing.tiny`), returning a model with finite logits.

Override the hooks below (``label_names``, :meth:`build_backbone`, :meth:`raw_inputs`,
:meth:`metric_example`, :meth:`strategy_job`, :attr:`strategy_params`) when a plugin needs
other inputs. torch, datasets and safetensors are
imported inside the checks, so collecting this module stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from lepton_platform._host import CORE_DISTRIBUTION, PluginHost, PluginInfo, canonical, set_host
from lepton_platform.errors import ConfigError, LeptonError, PluginError
from lepton_platform.specs import (
    NAME_PATTERN,
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    Spec,
    StrategySpec,
    TaskSpec,
)

if TYPE_CHECKING:
    import datasets
    import torch

    from lepton_platform.domains import Domain
    from lepton_platform.models import Backbone

__all__ = ["SPEC_FIXTURES", "PluginConformance"]

#: Test argument name -> the kind of spec it is parametrised over ("any": every kind).
SPEC_FIXTURES: dict[str, str] = {
    "spec": "any",
    "domain_spec": "domain",
    "backbone_spec": "backbone",
    "task_spec": "task",
    "strategy_spec": "strategy",
    "metric_spec": "metric",
    "command_spec": "command",
}

_HOSTS: dict[type, PluginHost] = {}


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} is not JSON-serialisable: {exc}") from None


def _is_numeric(value: Any) -> bool:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
        value = value.tolist()
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return True
    if isinstance(value, list | tuple):
        return len(value) > 0 and all(_is_numeric(v) for v in value)
    return False


class PluginConformance:
    """Base class of a plugin's conformance tests; set :attr:`distribution` or :attr:`plugin`."""

    #: The installed distribution under test (``"lepton-tabular"``); found through entry points.
    distribution: ClassVar[str | None] = None
    #: Or a plugin object (a module with hook implementations) registered in process.
    plugin: ClassVar[object | None] = None
    #: The label space the domain, task and metric checks use.
    label_names: ClassVar[tuple[str, ...]] = ("cat", "dog", "bird")
    #: Examples drawn from a domain's ``example_dataset``.
    num_examples: ClassVar[int] = 6
    #: Absolute tolerance when comparing a backbone's outputs before and after save and reload.
    atol: ClassVar[float] = 1e-5
    #: Examples of the one-epoch runs of the artifact and source-model checks.
    roundtrip_examples: ClassVar[int] = 24

    # -- which plugin, which specs (called at collection time) ---------------------------------

    @classmethod
    def target_label(cls) -> str:
        """The distribution, or the plugin object's name, for messages."""
        if cls.distribution is not None:
            return repr(cls.distribution)
        return repr(getattr(cls.plugin, "__name__", type(cls.plugin).__name__))

    @classmethod
    def conformance_host(cls) -> PluginHost:
        """The host the suite reads (built once per class, ignoring LEPTON_* switches).

        With :attr:`plugin`, an isolated host with the built-ins and that plugin; with only
        :attr:`distribution`, a host that discovers every installed plugin.
        """
        host = _HOSTS.get(cls)
        if host is not None:
            return host
        if cls.plugin is not None:
            from lepton_platform.testing.plugin import isolated_host

            host = isolated_host()
            name = getattr(cls.plugin, "__name__", None) or type(cls.plugin).__name__
            host.register(cls.plugin, name=name, distribution=cls.distribution or name)
        elif cls.distribution is not None:
            host = PluginHost(discover=True, environ={}, strict=False).load()
        else:
            raise PluginError(
                f'{cls.__name__}: set `distribution = "your-distribution"` or '
                "`plugin = your_module` to say which plugin the conformance suite checks"
            )
        _HOSTS[cls] = host
        return host

    @classmethod
    def _target_distribution(cls) -> str:
        if cls.distribution is not None:
            return canonical(cls.distribution)
        name = getattr(cls.plugin, "__name__", None) or type(cls.plugin).__name__
        return canonical(name)

    @classmethod
    def conformance_plugins(cls) -> list[PluginInfo]:
        """The plugins (entry points) of the distribution under test, as the host loaded them."""
        target = cls._target_distribution()
        return [p for p in cls.conformance_host().plugins if canonical(p.distribution) == target]

    @classmethod
    def conformance_specs(cls, kind: str) -> list[Spec]:
        """The specs of ``kind`` (``"any"``: all) that the plugin under test provides."""
        host = cls.conformance_host()
        kinds = list(host._specs) if kind == "any" else [kind]
        found: list[Spec] = []
        for info in cls.conformance_plugins():
            for k in kinds:
                found.extend(host.get(k, name) for name in info.provides.get(k, []))
        return found

    @pytest.fixture(autouse=True)
    def _lepton_conformance_host(self) -> Iterator[PluginHost]:
        """Make the suite's host the process-wide one while a check runs."""
        host = self.conformance_host()
        old = set_host(host)
        try:
            yield host
        finally:
            set_host(old)

    # -- hooks an author may override ----------------------------------------------------------

    def build_backbone(self, spec: BackboneSpec) -> Backbone:
        """The tiny CPU backbone the checks use: ``factory(pretrained=None, **tiny_options)``."""
        return spec.factory(pretrained=None, **dict(spec.tiny_options))  # type: ignore[no-any-return]

    def raw_inputs(self, domain: Domain, dataset: datasets.Dataset) -> list[Any]:
        """Raw prediction inputs taken from an example dataset: the input column's values, or
        one ``{column: value}`` dict per row when the domain has several input columns."""
        columns = list(domain.input_columns)
        if len(columns) == 1:
            return list(dataset[columns[0]])
        return [{c: row[c] for c in columns} for row in dataset]

    def metric_example(self, spec: MetricSpec) -> dict[str, Any]:
        """Keyword arguments of ``compute()``: labels, or class scores when ``needs_scores``."""
        references = [0, 1, 2, 1, 0, 2]
        if spec.needs_scores:
            scores = [
                [0.7, 0.2, 0.1],
                [0.1, 0.8, 0.1],
                [0.2, 0.3, 0.5],
                [0.3, 0.6, 0.1],
                [0.6, 0.3, 0.1],
                [0.1, 0.1, 0.8],
            ]
            return {"predictions": scores, "references": references}
        return {"predictions": [0, 1, 1, 1, 0, 2], "references": references}

    #: Parameters per strategy name for :meth:`test_strategy_applies` (default: none).
    strategy_params: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def strategy_job(self, spec: StrategySpec) -> Any:
        """The job a strategy is applied to: the kit's tiny model (a two-block MLP with
        batch-norm and two layer groups) on three Gaussian blobs, 3 epochs. Override it when
        a strategy needs another backbone or data."""
        from lepton_platform.testing.tiny import tiny_job

        return tiny_job(epochs=3)

    # -- the plugin and its metadata -----------------------------------------------------------

    def test_plugin_loads(self) -> None:
        """The distribution is installed, loads without errors, and provides something."""
        plugins = self.conformance_plugins()
        assert plugins, (
            f"no plugin of distribution {self.target_label()} was loaded: is it installed "
            "(pip install -e .) with a [project.entry-points.lepton_platform] entry?"
        )
        for info in plugins:
            assert info.status == "ok", f"plugin {info.name!r} ({info.status}): {info.errors}"
        provided = sum(len(names) for info in plugins for names in info.provides.values())
        assert provided > 0, f"{self.target_label()} loads but registers no spec"
        for info in plugins:
            assert not info.warnings, f"plugin {info.name!r}: {info.warnings}"

    def test_plugin_import_is_light(self) -> None:
        """Importing the plugin's modules (what ``lepton plugins`` does) imports none of the
        heavy libraries (torch, transformers, torchvision, datasets, ...): measured in a fresh
        process, so an indirect import counts too."""
        import os
        import subprocess
        import sys
        import types

        from lepton_platform._host import HEAVY_MODULES

        modules = {
            (info.module or "").split(":")[0].strip()
            for info in self.conformance_plugins()
            if info.module and not info.builtin
        }
        if isinstance(self.plugin, types.ModuleType):
            modules.add(self.plugin.__name__)
        # the child finds the modules where this process does (a plugin registered in process)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        for module in sorted(modules):
            code = (
                f"import sys, importlib\nimportlib.import_module({module!r})\n"
                f"print(sorted(m for m in {sorted(HEAVY_MODULES)!r} if m in sys.modules))"
            )
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
            )
            assert done.returncode == 0, done.stderr[-2000:]
            heavy = done.stdout.strip().splitlines()[-1]
            assert heavy == "[]", (
                f"importing {module} imports {heavy}: every lepton command would pay for it; "
                "import heavy libraries inside the spec factories"
            )

    def test_spec_metadata(self, spec: Spec) -> None:
        """Valid name, JSON-ready summary, a description, and the right provider."""
        assert spec.problems() == []
        assert NAME_PATTERN.match(spec.name)
        summary = _json_roundtrip(spec.summary(), f"{spec.kind} {spec.name!r}: summary()")
        assert summary["name"] == spec.name
        assert summary["kind"] == spec.kind
        assert spec.description.strip(), (
            f"{spec.kind} {spec.name!r} has no description (lepton plugins shows it)"
        )
        assert spec.provider is not None
        distribution = canonical(spec.provider.distribution)
        assert distribution == self._target_distribution() or (
            distribution == CORE_DISTRIBUTION and self._target_distribution() == CORE_DISTRIBUTION
        ), f"{spec.kind} {spec.name!r} is provided by {spec.provider}, not {self.target_label()}"

    # -- domains -------------------------------------------------------------------------------

    def _domain(self, spec: DomainSpec) -> Domain:
        from lepton_platform.domains import Domain

        domain = spec.factory()
        assert isinstance(domain, Domain), (
            f"domain {spec.name!r}: factory() returned {type(domain).__name__}, not a Domain"
        )
        return domain

    def test_domain_example_dataset(self, domain_spec: DomainSpec) -> None:
        """``example_dataset`` is in the standard schema, the requested labels, deterministic."""
        import datasets

        domain = self._domain(domain_spec)
        columns = domain.input_columns
        assert columns and all(isinstance(c, str) for c in columns), (
            f"domain {domain_spec.name!r}: input_columns must name at least one column"
        )
        names = list(self.label_names)
        ds = domain.example_dataset(self.num_examples, names, seed=0)
        assert isinstance(ds, datasets.Dataset)
        assert len(ds) == self.num_examples
        missing = [c for c in (*columns, "label") if c not in ds.column_names]
        assert not missing, f"example_dataset lacks columns {missing}: has {ds.column_names}"
        label = ds.features["label"]
        assert isinstance(label, datasets.ClassLabel), f"label is {label}, not a ClassLabel"
        assert label.names == names
        assert all(0 <= v < len(names) for v in ds["label"])
        again = domain.example_dataset(self.num_examples, names, seed=0)
        assert ds.data.table.equals(again.data.table), "example_dataset(seed=0) is not repeatable"

    def test_domain_from_inputs(self, domain_spec: DomainSpec) -> None:
        """``from_inputs`` reads raw inputs taken from the example dataset."""
        import datasets

        domain = self._domain(domain_spec)
        ds = domain.example_dataset(self.num_examples, list(self.label_names), seed=0)
        raw = self.raw_inputs(domain, ds)
        out = domain.from_inputs(raw)
        assert isinstance(out, datasets.Dataset)
        assert len(out) == len(raw)
        missing = [c for c in domain.input_columns if c not in out.column_names]
        assert not missing, f"from_inputs lacks input columns {missing}: has {out.column_names}"
        assert "label" not in out.column_names, "from_inputs must give the input columns only"

    # -- backbones -----------------------------------------------------------------------------

    def _backbone(self, spec: BackboneSpec) -> Backbone:
        import torch

        from lepton_platform.models import Backbone

        torch.manual_seed(0)
        backbone = self.build_backbone(spec)
        assert isinstance(backbone, Backbone), (
            f"backbone {spec.name!r}: factory returned {type(backbone).__name__}, not a Backbone"
        )
        assert isinstance(backbone.feature_dim, int) and backbone.feature_dim > 0
        return backbone

    @staticmethod
    def _batch(backbone: Backbone, size: int) -> dict[str, torch.Tensor]:
        import torch

        batch = backbone.example_batch(size)
        assert batch and all(isinstance(v, torch.Tensor) for v in batch.values())
        assert all(v.device.type == "cpu" for v in batch.values()), "example_batch must be on CPU"
        return batch

    def test_backbone_forward_backward(self, backbone_spec: BackboneSpec) -> None:
        """Forward gives ``(batch, feature_dim)``; every trainable parameter gets a finite grad."""
        import torch

        backbone = self._backbone(backbone_spec)
        backbone.train()
        out = backbone(**self._batch(backbone, 2))
        assert tuple(out.shape) == (2, backbone.feature_dim), (
            f"forward gave shape {tuple(out.shape)}, expected (2, {backbone.feature_dim})"
        )
        assert torch.isfinite(out).all()
        out.float().pow(2).mean().backward()
        trainable = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
        assert trainable, "the backbone has no trainable parameter"
        no_grad = [n for n, p in trainable if p.grad is None]
        assert not no_grad, (
            f"parameters that get no gradient: {no_grad} (drop unused modules, or set "
            "requires_grad=False on them)"
        )
        bad = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients in {bad}"

    def test_backbone_layer_groups(self, backbone_spec: BackboneSpec) -> None:
        """Layer groups are non-empty, uniquely named and hold every parameter exactly once."""
        backbone = self._backbone(backbone_spec)
        groups = backbone.layer_groups()
        assert groups, "layer_groups() is empty"
        names = [g.name for g in groups]
        assert len(set(names)) == len(names), f"layer group names repeat: {names}"
        assert backbone.group_names() == names
        count: dict[int, int] = {}
        for group in groups:
            params = list(group.parameters())
            assert params, f"layer group {group.name!r} holds no parameter"
            for p in params:
                count[id(p)] = count.get(id(p), 0) + 1
        everything = dict(backbone.named_parameters())
        ids = {id(p): n for n, p in everything.items()}
        absent = [n for n, p in everything.items() if id(p) not in count]
        twice = [ids.get(i, "?") for i, c in count.items() if c > 1]
        foreign = [i for i in count if i not in ids]
        assert not absent, f"parameters in no layer group: {absent}"
        assert not twice, f"parameters in more than one layer group: {twice}"
        assert not foreign, f"{len(foreign)} layer-group parameters are not the backbone's own"

    def test_backbone_config_rebuilds(self, backbone_spec: BackboneSpec, tmp_path: Path) -> None:
        """``factory(pretrained=None, **config())`` rebuilds the architecture; weights saved with
        safetensors load into it and give the same outputs."""
        import torch
        from safetensors.torch import load_model, save_model

        backbone = self._backbone(backbone_spec)
        config = _json_roundtrip(backbone.config(), f"backbone {backbone_spec.name!r}: config()")
        rebuilt = backbone_spec.factory(pretrained=None, **config)
        assert type(rebuilt) is type(backbone)
        assert rebuilt.feature_dim == backbone.feature_dim
        shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
        again = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
        assert again == shapes, "config() does not rebuild the same architecture"
        assert _json_roundtrip(rebuilt.config(), "config()") == config
        path = tmp_path / "model.safetensors"
        save_model(backbone, str(path))
        load_model(rebuilt, str(path), strict=True)
        backbone.eval()
        rebuilt.eval()
        batch = self._batch(backbone, 3)
        with torch.no_grad():
            expected = backbone(**batch)
            got = rebuilt(**batch)
        assert torch.allclose(expected, got, atol=self.atol), (
            f"reloaded backbone differs by {(expected - got).abs().max().item():.3g}"
        )

    def test_backbone_preprocessing(self, backbone_spec: BackboneSpec) -> None:
        """The domain's examples go through ``transform`` (``datasets.map``), ``collate`` and
        forward; the preprocessor is picklable, JSON-described and deterministic."""
        import torch

        from lepton_platform.models import Preprocessor

        domain_spec = self._backbone_domain(backbone_spec)
        backbone = self._backbone(backbone_spec)
        pre = backbone.preprocessor()
        assert isinstance(pre, Preprocessor)
        _json_roundtrip(pre.config(), f"backbone {backbone_spec.name!r}: preprocessor config()")
        assert isinstance(pre.fingerprint(), str)
        pickle.dumps(pre)  # datasets hashes and may ship it to worker processes
        domain = self._domain(domain_spec)
        n = 4
        ds = domain.example_dataset(n, list(self.label_names), seed=0)
        missing = [c for c in pre.input_columns if c not in ds.column_names]
        assert not missing, f"preprocessor reads {missing}, the domain gives {ds.column_names}"
        mapped = ds.map(pre.transform, batched=True, batch_size=3)
        again = ds.map(pre.transform, batched=True, batch_size=3)
        outputs = list(pre.output_columns)
        assert outputs, "preprocessor.output_columns is empty"
        absent = [c for c in outputs if c not in mapped.column_names]
        assert not absent, f"transform did not write {absent}"
        assert mapped.select_columns(outputs).data.table.equals(
            again.select_columns(outputs).data.table
        ), "transform is not deterministic"
        examples = [mapped.select_columns(outputs)[i] for i in range(n)]
        batch = pre.collate(examples)
        assert all(isinstance(v, torch.Tensor) for v in batch.values())
        backbone.eval()
        with torch.no_grad():
            out = backbone(**batch)
        assert tuple(out.shape) == (n, backbone.feature_dim)
        assert torch.isfinite(out).all()

    def _backbone_domain(self, spec: BackboneSpec) -> DomainSpec:
        domains = self.conformance_host().specs("domain")
        found = domains.get(spec.domain)
        assert isinstance(found, DomainSpec), (
            f"backbone {spec.name!r} reads the domain {spec.domain!r}, which no installed plugin "
            f"registers (registered: {sorted(domains)}); name a registered domain, or install "
            "the plugin that provides it"
        )
        return found

    def test_backbone_options_are_checked(self, backbone_spec: BackboneSpec) -> None:
        """The backbone's options are known (declared in the spec, or read from the factory's
        signature), so a misspelled one is refused by name with the closest suggested."""
        import lepton_platform as lp

        accepted = backbone_spec.accepted_options()
        assert accepted is not None, (
            f"backbone {backbone_spec.name!r}: its factory takes **options and the spec declares "
            "none, so misspelled options cannot be refused: declare them "
            "(BackboneSpec(options={'name': 'meaning', ...}))"
        )
        missing = [k for k in backbone_spec.tiny_options if k not in accepted]
        assert not missing, f"tiny_options {missing} are not among the declared options"
        with pytest.raises(ConfigError, match="has no option 'lepton_kit_no_such_option'"):
            lp.create_backbone(
                backbone_spec.name,
                pretrained=None,
                **dict(backbone_spec.tiny_options),
                lepton_kit_no_such_option=1,
            )

    def _tiny_run(
        self, spec: BackboneSpec, tmp_path: Path, name: str, **changes: Any
    ) -> tuple[Any, Path, Domain, datasets.Dataset]:
        """A one-epoch transfer of the tiny backbone on the domain's example data."""
        import lepton_platform as lp

        domain = self._domain(self._backbone_domain(spec))
        data = domain.example_dataset(self.roundtrip_examples, list(self.label_names), seed=0)
        options = {
            "domain": domain,
            "data": data,
            "split": {"validation": 0.25, "test": 0.25, "seed": 0},
            "backbone": spec.name,
            "backbone_options": dict(spec.tiny_options),
            "strategy": "finetune",
            "train": {"epochs": 1, "batch_size": 4, "progress": False, "seed": 0},
            "bootstrap": 0,
            "output_dir": tmp_path / name,
        }
        options.update(changes)
        result = lp.transfer(**options)
        return result, tmp_path / name / "model", domain, data

    def test_backbone_artifact_round_trip(
        self, backbone_spec: BackboneSpec, tmp_path: Path
    ) -> None:
        """Train the tiny backbone one epoch, save it, load it with ``lp.load`` and predict the
        domain's raw inputs: the loaded model gives the trained model's scores."""
        import numpy as np

        import lepton_platform as lp

        result, folder, domain, data = self._tiny_run(backbone_spec, tmp_path, "run")
        predictor = lp.load(folder)
        assert predictor.label_names == result.data_summary["label_names"]
        assert sorted(predictor.label_names) == sorted(self.label_names)
        rows = data.select(range(4))
        predictions = predictor.predict(self.raw_inputs(domain, rows))
        assert len(predictions) == 4
        assert all(p.label in self.label_names for p in predictions)
        import torch

        logits = predictor.logits(rows.remove_columns("label"))
        again = torch.from_numpy(logits).softmax(-1).numpy()
        scores = np.array([[p.scores[n] for n in predictor.label_names] for p in predictions])
        assert np.allclose(again, scores, atol=1e-5), "predict() and logits() disagree"
        assert result.artifact is not None

    def test_backbone_transfers_from_a_lepton_model(
        self, backbone_spec: BackboneSpec, tmp_path: Path
    ) -> None:
        """A saved model of this backbone is its ``pretrained`` source: read through the core
        service (checksums verified), every tensor loads, the features are the saved ones."""
        import torch

        import lepton_platform as lp

        result, folder, _, _ = self._tiny_run(backbone_spec, tmp_path, "source")
        target = lp.create_backbone(backbone_spec.name, pretrained=str(folder))
        report = target.load_report
        assert report is not None, (
            f"backbone {backbone_spec.name!r} built from a Lepton model folder sets no "
            "load_report: load it with lepton_platform.artifacts.load_backbone"
        )
        assert report.share == 1.0 and not report.mismatched, report.summary()
        source = result.model.backbone.eval().cpu()
        target.eval()
        batch = self._batch(target, 2)
        with torch.no_grad():
            assert torch.allclose(source(**batch), target(**batch), atol=self.atol)
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
        with pytest.raises(LeptonError, match=r"model\.safetensors"):
            lp.create_backbone(backbone_spec.name, pretrained=str(folder))

    # -- tasks ---------------------------------------------------------------------------------

    def test_task_head_loss_predict(self, task_spec: TaskSpec) -> None:
        """Head on random features, finite differentiable loss, prediction shapes, labels."""
        import torch

        from lepton_platform.tasks import Task

        names = list(self.label_names)
        k, batch, dim = len(names), 4, 8
        task = task_spec.factory(label_names=names)
        assert isinstance(task, Task)
        assert task.label_names == names and task.num_labels == k
        config = _json_roundtrip(task.config(), f"task {task_spec.name!r}: config()")
        assert task_spec.factory(label_names=names, **config).config() == task.config()
        assert all(isinstance(m, str) and NAME_PATTERN.match(m) for m in task.default_metrics)
        with pytest.raises(ConfigError):
            task_spec.factory(label_names=names[:1])

        torch.manual_seed(0)
        head = task.build_head(dim)
        features = torch.randn(batch, dim, requires_grad=True)
        logits = head(features)
        if task.multi_label:
            labels = torch.randint(0, 2, (batch, k))
        else:
            labels = torch.randint(0, k, (batch,))
        loss = task.loss(logits, labels)
        assert loss.ndim == 0 and torch.isfinite(loss), f"loss is {loss}"
        loss.backward()  # type: ignore[no-untyped-call]
        assert features.grad is not None and torch.isfinite(features.grad).all()
        assert features.grad.abs().sum() > 0, "the loss does not depend on the features"
        for n, p in head.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"head {n}: bad grad"

        predicted, scores = task.predict(logits.detach())
        assert tuple(scores.shape) == (batch, k) and torch.isfinite(scores).all()
        if task.multi_label:
            assert tuple(predicted.shape) == (batch, k)
            assert set(predicted.flatten().tolist()) <= {0, 1}
        else:
            assert tuple(predicted.shape) == (batch,)
            assert int(predicted.min()) >= 0 and int(predicted.max()) < k

    # -- metrics -------------------------------------------------------------------------------

    def test_metric_compute(self, metric_spec: MetricSpec) -> None:
        """``compute()`` on a tiny example returns a non-empty dict of numbers."""
        metric = metric_spec.factory()
        result = metric.compute(**self.metric_example(metric_spec))
        assert isinstance(result, Mapping) and result, f"compute() returned {result!r}"
        bad = {k: v for k, v in result.items() if not _is_numeric(v)}
        assert not bad, f"metric {metric_spec.name!r}: values that are not numbers: {bad}"
        for key, value in result.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert not math.isinf(value), f"metric {metric_spec.name!r}: {key} is infinite"

    def test_metric_headline_and_direction(self, metric_spec: MetricSpec) -> None:
        """``compute()`` returns the spec's headline key, and the spec's direction holds: a
        perfect prediction scores at least as well as a poor one."""
        metric = metric_spec.factory()
        example = self.metric_example(metric_spec)
        references = list(example["references"])
        result = metric.compute(**example)
        assert metric_spec.key in result, (
            f"metric {metric_spec.name!r}: compute() returned {sorted(result)}, not its headline "
            f"key {metric_spec.key!r}; set MetricSpec(headline=...) to the key holding its number"
        )
        if not isinstance(result[metric_spec.key], int | float):
            return  # a table (a confusion matrix) has no direction
        k = len(self.label_names)
        if metric_spec.needs_scores:
            perfect: list[Any] = [[1.0 if j == r else 0.0 for j in range(k)] for r in references]
            poor: list[Any] = [
                [0.0 if j == r else 1.0 / (k - 1) for j in range(k)] for r in references
            ]
        else:
            perfect, poor = references, [(r + 1) % k for r in references]
        options = {key: v for key, v in example.items() if key not in ("predictions", "references")}
        best = float(
            metric.compute(predictions=perfect, references=references, **options)[metric_spec.key]
        )
        worst = float(
            metric.compute(predictions=poor, references=references, **options)[metric_spec.key]
        )
        if metric_spec.higher_is_better:
            assert best >= worst, (
                f"{metric_spec.name!r} says higher is better: perfect {best}, poor {worst}"
            )
        else:
            assert best <= worst, (
                f"{metric_spec.name!r} says lower is better: perfect {best}, poor {worst}"
            )

    # -- commands ------------------------------------------------------------------------------

    def test_command_configure(self, command_spec: CommandSpec) -> None:
        """``configure`` adds its arguments to a fresh parser; ``run`` is callable."""
        parser = argparse.ArgumentParser(prog=f"lepton {command_spec.name}")
        if command_spec.configure is not None:
            command_spec.configure(parser)
        assert isinstance(parser.format_help(), str)
        assert callable(command_spec.run)

    # -- strategies ----------------------------------------------------------------------------

    def test_strategy_applies(self, strategy_spec: StrategySpec) -> None:
        """The strategy builds with its defaults (plus :attr:`strategy_params`), accepts the
        tiny model in ``check``, trains it, and returns a model giving finite logits of the
        right shape, with JSON-ready parameters and details."""
        import torch

        from lepton_platform.models import TransferModel
        from lepton_platform.strategies import Strategy, TransferOutcome

        params = dict(self.strategy_params.get(strategy_spec.name, {}))
        strategy = strategy_spec.factory(**params)
        assert isinstance(strategy, Strategy), (
            f"strategy {strategy_spec.name!r}: the factory returned {type(strategy).__name__}, "
            "not a lepton_platform.strategies.Strategy"
        )
        _json_roundtrip(strategy.config(), f"strategy {strategy_spec.name!r} config()")
        job = self.strategy_job(strategy_spec)
        if strategy.needs_source_head and job.source_head is not None:
            from lepton_platform.testing.tiny import trained_source

            job = trained_source(job)  # a source model's confident head, not a random one
        strategy.check(job.model, pretrained=job.pretrained_state is not None)
        strategy.check_job(job)
        outcome = strategy.run(job)
        assert isinstance(outcome, TransferOutcome), (
            f"strategy {strategy_spec.name!r}: run() returned {type(outcome).__name__}, "
            "not a TransferOutcome"
        )
        assert isinstance(outcome.model, TransferModel)
        _json_roundtrip(outcome.details, f"strategy {strategy_spec.name!r} details")
        assert isinstance(outcome.history, list)
        model = outcome.model.eval()
        batch = job.preprocessor.collate([job.validation[i] for i in range(4)])
        with torch.no_grad():
            logits = model(**batch)
        assert logits.shape == (4, job.task.num_labels), logits.shape
        assert torch.isfinite(logits).all(), f"strategy {strategy_spec.name!r}: non-finite logits"
