"""``lepton export``: tiny text, image and speech models (random weights, built here) exported
to ONNX, TorchScript and their own libraries' formats, and read back by onnxruntime, torch.jit,
transformers and torchvision to the scores ``lp.load(...).predict`` gives; model cards; formats
a backbone cannot produce refused with the reason and the formats that work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lepton_platform as lp
from lepton_platform.data import prepare
from lepton_platform.errors import ArtifactError
from tests._saved_models import LABELS, lepton, save_tiny, write_png, write_wav

TEXTS = ["the food was good", "bad", "the service was very slow and the staff really awful"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def raw_inputs(modality: str, folder: Path) -> list[Any]:
    """Inputs of different sizes (so the dynamic axes are exercised)."""
    folder.mkdir(parents=True, exist_ok=True)
    if modality == "text":
        return list(TEXTS)
    if modality == "image":
        return [str(write_png(folder / f"{i}.png", seed=i, size=14 + 5 * i)) for i in range(3)]
    return [
        str(write_wav(folder / f"{i}.wav", seconds=0.15 + 0.1 * i, pitch=300 + 200 * i))
        for i in range(3)
    ]


def batch(predictor: lp.Predictor, inputs: list[Any], cache: Path) -> dict[str, torch.Tensor]:
    """The preprocessed, collated batch the Lepton model itself predicts on."""
    prepared = prepare(predictor.domain.from_inputs(inputs), predictor.preprocessor, cache=cache)
    rows = [prepared[i] for i in range(len(prepared))]
    return predictor.preprocessor.collate(rows)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def lepton_scores(predictor: lp.Predictor, inputs: list[Any]) -> np.ndarray:
    return np.array([[p.scores[n] for n in LABELS] for p in predictor.predict(inputs)])


@pytest.mark.parametrize(
    "modality",
    [
        pytest.param("text", marks=pytest.mark.slow),  # torch.export of a transformer: ~20 s
        "image",
        pytest.param("speech", marks=pytest.mark.slow),
    ],
)
def test_onnx_export_matches_the_lepton_predictor(tmp_path: Path, modality: str) -> None:
    import onnxruntime

    folder = save_tiny(tmp_path / "run" / "model", modality)
    result = lp.export(folder, format="onnx")
    assert result.folder == tmp_path / "run" / "export-onnx"
    assert result.checked_with == "onnxruntime" and result.max_abs_diff < 1e-4
    assert {"model.onnx", "README.md", "lepton_export.json"} <= set(result.files)
    described = json.loads((result.folder / "lepton_export.json").read_text())
    assert described["label_names"] == LABELS and described["scores"] == "softmax"
    for axes in described["dynamic_axes"].values():
        assert axes["0"] == "batch"
        if modality != "image":  # tokens and samples are dynamic too
            assert axes["1"] in ("sequence", "samples")

    predictor = lp.load(folder)
    inputs = raw_inputs(modality, tmp_path / "inputs")
    tensors = batch(predictor, inputs, tmp_path / "cache")
    session = onnxruntime.InferenceSession(
        str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {name: tensors[name].numpy() for name in described["inputs"]}
    logits = session.run(["logits"], feeds)[0]
    assert logits.shape == (3, len(LABELS))
    want = lepton_scores(predictor, inputs)
    np.testing.assert_allclose(softmax(logits.astype(np.float64)), want, atol=1e-4, rtol=0)
    assert want.argmax(1).tolist() == logits.argmax(1).tolist()
    assert np.ptp(logits, axis=0).max() > 1e-3  # the inputs get different logits

    card = (result.folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: onnx\n")
    assert "| train | `f00d` |" in card and "| test | `beef` |" in card
    assert "| test | accuracy | 0.7500 | 0.6000 to 0.9000 (95%, bootstrap) |" in card
    assert "## Baselines" in card and "`cat`, `dog`, `owl`" in card


def test_hf_text_export_loads_in_transformers_with_the_same_probabilities(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = save_tiny(tmp_path / "model", "text")
    out = tmp_path / "hf"
    result = lp.export(folder, out, format="hf")
    assert result.checked_with == "transformers" and result.max_abs_diff < 1e-4
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(result.files)

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert [model.config.id2label[i] for i in range(3)] == LABELS
    encoded = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**encoded).logits.softmax(-1).double().numpy()
    want = lepton_scores(lp.load(folder), TEXTS)
    np.testing.assert_allclose(probabilities, want, atol=1e-4, rtol=0)
    assert "pipeline_tag: text-classification" in (out / "README.md").read_text()


def test_hf_speech_export_loads_in_transformers_with_the_same_probabilities(
    tmp_path: Path,
) -> None:
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    folder = save_tiny(tmp_path / "model", "speech")
    result = lp.export(folder, tmp_path / "hf", format="hf")
    assert result.checked_with == "transformers"
    extractor = AutoFeatureExtractor.from_pretrained(str(result.folder))
    model = AutoModelForAudioClassification.from_pretrained(str(result.folder)).eval()
    assert model.config.label2id == {n: i for i, n in enumerate(LABELS)}
    clip = write_wav(tmp_path / "clip.wav", seconds=0.3, pitch=440)
    predictor = lp.load(folder)
    [row] = prepare(predictor.domain.from_inputs([str(clip)]), predictor.preprocessor,
                    cache=tmp_path / "cache")  # fmt: skip
    waveform = predictor.preprocessor.collate([row])["input_values"][0].numpy()
    encoded = extractor(waveform, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**encoded).logits.softmax(-1).double().numpy()
    np.testing.assert_allclose(
        probabilities, lepton_scores(predictor, [str(clip)]), atol=1e-4, rtol=0
    )


def test_hf_image_export_is_a_torchvision_state_dict_with_its_preprocessing(
    tmp_path: Path,
) -> None:
    from safetensors.torch import load_file
    from torchvision.models import resnet

    folder = save_tiny(tmp_path / "model", "image", width=64)
    result = lp.export(folder, tmp_path / "tv", format="hf")
    assert result.checked_with == "torchvision"
    spec = json.loads((result.folder / "torchvision.json").read_text())
    prep = json.loads((result.folder / "preprocessing.json").read_text())
    predictor = lp.load(folder)
    own = predictor.preprocessor.config()
    assert (prep["crop_size"], prep["mean"], prep["std"]) == (
        own["image_size"],
        own["mean"],
        own["std"],
    )
    # built by hand from torchvision's own class, as the model card says
    net = resnet.ResNet(getattr(resnet, spec["block"]), spec["layers"], num_classes=3)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # the tiny model's small input
    net.maxpool = torch.nn.Identity()
    net.load_state_dict(load_file(str(result.folder / "model.safetensors")))
    inputs = raw_inputs("image", tmp_path / "inputs")
    with torch.no_grad():
        logits = net.eval()(batch(predictor, inputs, tmp_path / "cache")["pixel_values"])
    np.testing.assert_allclose(
        softmax(logits.double().numpy()), lepton_scores(predictor, inputs), atol=1e-4, rtol=0
    )


def test_torchscript_export_reloads_to_the_same_logits(tmp_path: Path) -> None:
    folder = save_tiny(tmp_path / "model", "text")
    result = lp.export(folder, tmp_path / "ts", format="torchscript")
    assert result.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    predictor = lp.load(folder)
    tensors = batch(predictor, TEXTS, tmp_path / "cache")
    traced = torch.jit.load(str(result.folder / "model.pt"))
    with torch.no_grad():
        logits = traced(*[tensors[n] for n in result.inputs])
    np.testing.assert_allclose(
        softmax(logits.double().numpy()), lepton_scores(predictor, TEXTS), atol=1e-4, rtol=0
    )


def test_a_format_the_backbone_cannot_produce_names_the_reason_and_what_works(
    tmp_path: Path,
) -> None:
    mean_pooled = save_tiny(tmp_path / "mean" / "model", "text", pooling="mean")
    with pytest.raises(ArtifactError) as caught:
        lp.export(mean_pooled, tmp_path / "out", format="hf")
    message = str(caught.value)
    assert "as hf" in message and "mean of the token states" in message
    assert "try --format onnx or torchscript" in message
    assert not (tmp_path / "out").exists()  # nothing half-written

    narrow = save_tiny(tmp_path / "narrow" / "model", "image")  # an 8-channel stem
    cli = lepton("export", str(narrow), "--format", "hf", cwd=tmp_path)
    assert cli.returncode == 1
    assert "stem width of 8" in cli.stderr and "try --format onnx or torchscript" in cli.stderr


def test_an_export_never_replaces_a_folder_that_is_not_one(tmp_path: Path) -> None:
    folder = save_tiny(tmp_path / "model", "image")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a Lepton export folder"):
        lp.export(folder, mine, format="torchscript")
    assert (mine / "notes.txt").read_text() == "keep me"
    cli = lepton("export", str(folder), "--format", "torchscript", "--json", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    first = json.loads(cli.stdout)
    assert first["folder"] == str(tmp_path / "export-torchscript")
    assert first["checked_with"] == "torch.jit.load" and first["max_abs_diff"] < 1e-4
    assert first["files"] == ["README.md", "lepton_export.json", "model.pt"]
    with pytest.raises(ArtifactError, match="--overwrite"):
        lp.export(folder, first["folder"], format="torchscript")
    again = lp.export(folder, first["folder"], format="torchscript", overwrite=True)
    assert again.files == first["files"]


def test_the_model_card_shows_the_baselines_of_the_comparison_that_holds_the_model(
    tmp_path: Path,
) -> None:
    folder = save_tiny(tmp_path / "cmp" / "finetune" / "seed-0" / "model", "image")
    difference = {"against": "scratch", "delta": 0.1, "low": 0.05, "high": 0.15}
    comparison = {
        "metric": "accuracy",
        "key": "accuracy",
        "seeds": [0, 1],
        "rows": [
            {"name": "scratch", "kind": "baseline", "mean": 0.7, "std": 0.02, "differences": {}},
            {"name": "finetune", "kind": "strategy", "mean": 0.8, "std": 0.01,
             "differences": {"scratch": difference}},
        ],
    }  # fmt: skip
    (tmp_path / "cmp" / "comparison.json").write_text(json.dumps(comparison))
    result = lp.export(folder, tmp_path / "ts", format="torchscript")
    card = (result.folder / "README.md").read_text()
    assert "mean ± std over seeds [0, 1]" in card
    assert "| scratch | baseline | 0.7000 | 0.0200 | - |" in card
    assert "| finetune | strategy | 0.8000 | 0.0100 | scratch: +0.1000 [+0.0500, +0.1500] |" in card
