"""Model artifacts: save one folder atomically, load it in a fresh process through the
registry and predict the same scores; detect tampered or truncated weights; name a missing
plugin; leave an earlier artifact intact when the destination is unwritable or full."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import lepton_platform as lp
from lepton_platform import artifacts
from lepton_platform.models import TransferModel

HELPERS = Path(__file__).with_name("_artifact_helpers.py")
LABELS = ["low", "mid", "high"]
INPUTS = [[0.1, -1.0, 2.0, 0.5], [1.5, 0.3, -0.2, 0.0], [-2.0, 0.7, 0.9, 1.1]]


def _import_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_artifact_helpers", HELPERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def helpers() -> Iterator[ModuleType]:
    module = _import_helpers()
    lp.register_plugin(
        module, name=module.PLUGIN_NAME, distribution=module.DISTRIBUTION, version=module.VERSION
    )
    yield module
    lp.unregister_plugin(module.PLUGIN_NAME)


def _model(helpers: ModuleType, seed: int = 0) -> tuple[TransferModel, Any]:
    torch.manual_seed(seed)
    backbone = lp.create_backbone(helpers.BACKBONE, pretrained=None, hidden=6, scale=2.0)
    task = lp.create_task("classification", label_names=LABELS, dropout=0.1)
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    model.train()
    with torch.no_grad():  # move the batch-norm statistics away from their defaults
        for _ in range(3):
            model(x=torch.randn(16, 4) * 3 + 1)
    return model.eval(), task


def _save(helpers: ModuleType, folder: Path, model: TransferModel, task: Any, **kw: Any) -> Path:
    options: dict[str, Any] = {
        "domain": helpers.DOMAIN,
        "backbone": helpers.BACKBONE,
        "backbone_config": model.backbone.config(),
        "task": "classification",
        "task_config": task.config(),
        "label_names": LABELS,
        "preprocessing": model.backbone.preprocessor().config(),
        "strategy": {"name": "fine-tune", "lr": 1e-3},
        "metrics": {"test": {"accuracy": 0.75}},
        "data_fingerprints": {"train": "abc123"},
    }
    options.update(kw)
    return lp.save_model(folder, model, **options)


def _expected_scores(model: TransferModel) -> np.ndarray:
    x = torch.tensor(INPUTS, dtype=torch.float32) * 2.0  # the preprocessor's scale
    with torch.no_grad():
        return model(x=x).softmax(-1).numpy()


def _run(
    code: str, *, register: bool = True, check: bool = True
) -> subprocess.CompletedProcess[str]:
    prelude = f"""
        import importlib.util, json, sys
        import lepton_platform as lp
        from lepton_platform import artifacts
        spec = importlib.util.spec_from_file_location("_artifact_helpers", {str(HELPERS)!r})
        helpers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helpers)
    """
    if register:
        prelude += """
        lp.register_plugin(helpers, name=helpers.PLUGIN_NAME,
                           distribution=helpers.DISTRIBUTION, version=helpers.VERSION)
        """
    script = textwrap.dedent(prelude) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=check, timeout=300
    )


def test_saved_folder_holds_weights_manifest_and_metrics(
    helpers: ModuleType, tmp_path: Path
) -> None:
    model, task = _model(helpers)
    folder = _save(helpers, tmp_path / "model", model, task)
    assert sorted(p.name for p in folder.iterdir()) == [
        "lepton.json",
        "metrics.json",
        "model.safetensors",
    ]
    manifest = json.loads((folder / "lepton.json").read_text())
    assert manifest["format_version"] == artifacts.FORMAT_VERSION
    assert manifest["platform_version"] == lp.__version__
    assert manifest["backbone"] == {
        "name": helpers.BACKBONE,
        "config": {"hidden": 6, "scale": 2.0},
        "provider": {"distribution": helpers.DISTRIBUTION, "version": helpers.VERSION,
                     "plugin": helpers.PLUGIN_NAME},
    }  # fmt: skip
    assert manifest["task"]["provider"]["distribution"] == "lepton-platform"
    assert manifest["plugins"] == {
        helpers.DISTRIBUTION: helpers.VERSION,
        "lepton-platform": lp.__version__,
    }
    assert manifest["label_names"] == LABELS
    assert manifest["preprocessing"] == {"scale": 2.0}
    assert manifest["data_fingerprints"] == {"train": "abc123"}
    assert len(manifest["weights"]["sha256"]) == 64
    assert json.loads((folder / "metrics.json").read_text()) == {"test": {"accuracy": 0.75}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_load_in_a_new_process_predicts_the_same_scores(
    helpers: ModuleType, tmp_path: Path
) -> None:
    model, task = _model(helpers, seed=1)
    folder = _save(helpers, tmp_path / "model", model, task)
    expected = _expected_scores(model)
    out = _run(f"""
        predictor = lp.load({str(folder)!r})
        preds = predictor.predict({INPUTS!r})
        ds = predictor.domain.from_inputs({INPUTS!r})
        same = [p.scores for p in predictor.predict_dataset(ds)] == [p.scores for p in preds]
        print(json.dumps({{"labels": [p.label for p in preds],
                           "scores": [[p.scores[n] for n in predictor.label_names] for p in preds],
                           "same": same, "names": predictor.label_names,
                           "training": predictor.model.training}}))
    """)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["names"] == LABELS
    assert result["same"] is True and result["training"] is False
    np.testing.assert_allclose(np.array(result["scores"]), expected, rtol=1e-5, atol=1e-6)
    assert result["labels"] == [LABELS[i] for i in expected.argmax(1)]


def test_predictor_in_process(helpers: ModuleType, tmp_path: Path) -> None:
    model, task = _model(helpers, seed=2)
    predictor = lp.load(_save(helpers, tmp_path / "m", model, task))
    preds = predictor.predict(INPUTS)
    np.testing.assert_allclose(
        [[p.scores[n] for n in LABELS] for p in preds], _expected_scores(model), rtol=1e-5
    )
    assert all(p.labels == (p.label,) for p in preds)
    assert predictor.manifest["strategy"]["name"] == "fine-tune"
    labelled = helpers.VectorDomain().example_dataset(5, LABELS, seed=1)
    logits, labels = predictor.logits_dataset(labelled)
    assert logits.shape == (5, 3) and labels is not None
    assert labels.tolist() == labelled["label"]
    np.testing.assert_allclose(
        torch.from_numpy(logits).softmax(-1).numpy(),
        [[p.scores[n] for n in LABELS] for p in predictor.predict(labelled["values"])],
        rtol=1e-5,
    )
    assert predictor.task.config()["dropout"] == 0.1
    with pytest.raises(lp.DataError, match="input 1: expected 4 numbers"):
        predictor.predict([[1, 2, 3, 4], [1, 2]])


def test_tampered_or_truncated_weights_are_detected(helpers: ModuleType, tmp_path: Path) -> None:
    model, task = _model(helpers)
    folder = _save(helpers, tmp_path / "model", model, task)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(lp.ArtifactError, match="tampered"):
        lp.load(folder)
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(lp.ArtifactError, match="truncated"):
        lp.load(folder)
    weights.unlink()
    with pytest.raises(lp.ArtifactError, match="missing"):
        lp.load(folder)
    with pytest.raises(lp.ArtifactError, match=r"lepton\.json is missing"):
        lp.load(tmp_path)


def test_incompatible_manifest_version_is_named(helpers: ModuleType, tmp_path: Path) -> None:
    model, task = _model(helpers)
    folder = _save(helpers, tmp_path / "model", model, task)
    manifest = json.loads((folder / "lepton.json").read_text())
    manifest["format_version"] = artifacts.FORMAT_VERSION + 1
    manifest["platform_version"] = "9.0.0"
    (folder / "lepton.json").write_text(json.dumps(manifest))
    with pytest.raises(
        lp.ArtifactError, match=r"format version 2, written by lepton-platform 9\.0\.0.*upgrade"
    ):
        lp.load(folder)


def test_a_missing_plugin_is_named_with_its_distribution(
    helpers: ModuleType, tmp_path: Path
) -> None:
    model, task = _model(helpers)
    folder = _save(helpers, tmp_path / "model", model, task)
    out = _run(
        f"""
        try:
            lp.load({str(folder)!r})
        except lp.ArtifactError as exc:
            print("ERROR", exc)
        """,
        register=False,
    )
    assert "ERROR this model needs the domain 'art-vectors'" in out.stdout
    assert f"pip install '{helpers.DISTRIBUTION}=={helpers.VERSION}'" in out.stdout


def test_replacing_an_artifact_and_refusing_other_folders(
    helpers: ModuleType, tmp_path: Path
) -> None:
    first, task = _model(helpers, seed=3)
    second, _ = _model(helpers, seed=4)
    folder = _save(helpers, tmp_path / "model", first, task, metrics={"v": 1})
    _save(helpers, folder, second, task, metrics={"v": 2})
    predictor = lp.load(folder)
    assert predictor.manifest["metrics"] == {"v": 2}
    np.testing.assert_allclose(
        [[p.scores[n] for n in LABELS] for p in predictor.predict(INPUTS)],
        _expected_scores(second), rtol=1e-5,
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(lp.ArtifactError, match="not a Lepton model folder"):
        _save(helpers, other, first, task)
    assert (other / "todo.txt").read_text() == "keep me"
    with pytest.raises(lp.ArtifactError, match="backbone 'nope' is not registered"):
        _save(helpers, tmp_path / "x", first, task, backbone="nope")


def test_unwritable_destination_leaves_the_earlier_artifact(
    helpers: ModuleType, tmp_path: Path
) -> None:
    model, task = _model(helpers)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(lp.ArtifactError, match=r"cannot write the model to .*a-file/model"):
        _save(helpers, blocker / "model", model, task)
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_full_disk_leaves_the_earlier_artifact_intact(helpers: ModuleType, tmp_path: Path) -> None:
    model, task = _model(helpers, seed=5)
    folder = _save(helpers, tmp_path / "model", model, task, metrics={"v": "old"})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # A child process whose file-size limit is tiny: writing the new weights fails as on a
    # full disk (EFBIG), after the temporary folder was created.
    out = _run(f"""
        import resource, signal, torch
        from lepton_platform.models import TransferModel
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        backbone = lp.create_backbone(helpers.BACKBONE, pretrained=None, hidden=64)
        task = lp.create_task("classification", label_names={LABELS!r})
        model = TransferModel(backbone, task.build_head(64))
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
        try:
            lp.save_model({str(folder)!r}, model, domain=helpers.DOMAIN,
                backbone=helpers.BACKBONE, backbone_config=backbone.config(),
                task="classification", task_config=task.config(), label_names={LABELS!r},
                preprocessing={{}}, strategy={{}}, metrics={{"v": "new"}}, data_fingerprints={{}})
        except lp.ArtifactError as exc:
            print("ERROR", exc)
    """)
    assert "ERROR cannot write the model to" in out.stdout, out.stderr
    assert "disk has room" in out.stdout
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # temporary removed
    assert lp.load(folder).manifest["metrics"] == {"v": "old"}
