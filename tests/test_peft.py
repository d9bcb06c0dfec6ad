"""``lora``, ``ia3`` and ``bitfit`` on real tiny backbones (a BERT saved as a transformers folder,
the kit's MLP and convolutional nets): what trains, what is saved, what loads without peft and
what peft loads back, and the errors raised before any training."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import lepton_platform as lp
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.adapters import load_adapter
from lepton_platform.strategies.base import snapshot
from lepton_platform.strategies.probe import FeaturePreprocessor
from lepton_platform.testing.tiny import tiny_conv_job, tiny_conv_model, tiny_job
from tests._adapter_helpers import env_without_peft, save_pretrained_bert, write_reviews

HIDDEN, LAYERS, INTERMEDIATE = 128, 2, 512
TRAIN = {"epochs": 2, "lr": 2e-3, "batch_size": 16, "progress": False}


@pytest.fixture(autouse=True)
def _offline(lepton_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A tiny pretrained BERT folder, the same architecture with other weights, and reviews."""
    root = tmp_path_factory.mktemp("peft")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("LEPTON_CACHE_DIR", str(root / "cache"))
        yield {
            "root": root,
            "bert": save_pretrained_bert(root / "bert", seed=0),
            "other": save_pretrained_bert(root / "other", seed=1),
            "data": write_reviews(root / "reviews.txt", rows=120),
        }


def run(corpus: dict[str, Path], strategy: str, folder: str, **params: Any) -> Any:
    return lp.transfer(
        domain="text",
        data=str(corpus["data"]),
        backbone="hf-text",
        pretrained=str(corpus["bert"]),
        strategy=strategy,
        strategy_params=params,
        train=TRAIN,
        output_dir=str(corpus["root"] / folder),
        bootstrap=0,
    )


@pytest.fixture(scope="module")
def lora_run(corpus: dict[str, Path]) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEPTON_CACHE_DIR", str(corpus["root"] / "cache"))
        return run(corpus, "lora", "lora", rank=4, alpha=8.0)


def sentences() -> list[str]:
    return ["the food was good", "awful slow service", "i loved this place", "never again"]


# -- LoRA: what trains, what is saved ----------------------------------------------------------


def test_lora_trains_low_rank_updates_of_every_linear_layer_past_the_embeddings(
    lora_run: Any,
) -> None:
    # the default targets: each encoder layer's query, key, value, attention output (HxH),
    # intermediate (H->I) and output (I->H): r * (in + out) each; the pooler is unused (the
    # backbone pools the [CLS] token), so it is no layer group and gets none
    rank, h, i = 4, HIDDEN, INTERMEDIATE
    per_layer = 4 * rank * (h + h) + rank * (h + i) + rank * (i + h)
    head = h * 2 + 2
    details = lora_run.details
    assert details["adapted_layers"] == 6 * LAYERS
    assert details["trainable_parameters"] == LAYERS * per_layer + head
    assert lora_run.parameters["trainable"] == details["trainable_parameters"]
    assert details["trainable_share"] < 0.1
    assert not any("embeddings" in n or "pooler" in n for n in details["adapted_modules"])


def test_lora_saves_merged_weights_that_load_and_predict_without_peft(
    lora_run: Any, corpus: dict[str, Path], tmp_path: Path
) -> None:
    folder = lora_run.artifact
    manifest = json.loads((folder / "lepton.json").read_text())
    adapter = manifest["extra"]["adapter"]
    assert adapter["method"] == "lora" and adapter["format"] == "peft"
    assert len(adapter["base_fingerprint"]) == 16
    assert adapter["base"]["pretrained"] == str(corpus["bert"])
    # merged: the saved weights have the architecture of a plain BERT model, no lora_ tensors
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert not [k for k in keys if "lora" in k or "modules_to_save" in k or "base_layer" in k]
    expected = lp.load(folder).predict(sentences())
    script = textwrap.dedent(
        f"""
        import json, sys
        try:
            import peft
        except ImportError:
            pass
        else:
            sys.exit("peft was importable")
        import lepton_platform as lp
        out = lp.load({str(folder)!r}).predict({sentences()!r})
        print(json.dumps([p.scores for p in out]))
        assert "peft" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env_without_peft(tmp_path / "nopeft"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    for mine, theirs in zip(expected, scores, strict=True):
        for label, value in mine.scores.items():
            assert theirs[label] == pytest.approx(value, abs=1e-5)


def base_model(corpus: dict[str, Path], which: str, predictor: Any) -> TransferModel:
    backbone = lp.create_backbone("hf-text", pretrained=str(corpus[which]))
    return TransferModel(backbone, predictor.task.build_head(backbone.feature_dim))


def test_the_adapter_loads_with_peft_onto_the_base_model_to_the_same_logits(
    lora_run: Any, corpus: dict[str, Path]
) -> None:
    import peft

    folder = lora_run.artifact
    assert sorted(p.name for p in (folder / "adapter").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "lepton-adapter.json",
    ]
    merged = lp.load(folder)
    ds = merged.domain.from_inputs(sentences())
    want = merged.logits(ds)
    # peft's own loader, onto a base model with the pretrained weights and a fresh head
    on_base = lp.load(folder)
    on_base.model = peft.PeftModel.from_pretrained(
        base_model(corpus, "bert", merged), str(folder / "adapter")
    )
    assert on_base.logits(ds) == pytest.approx(want, abs=1e-5)
    # ... which the base model alone does not give
    plain = lp.load(folder)
    plain.model = base_model(corpus, "bert", merged)
    assert abs(plain.logits(ds) - want).max() > 1e-3
    # Lepton's loader checks the fingerprint first, then hands over to peft
    checked = lp.load(folder)
    checked.model = load_adapter(base_model(corpus, "bert", merged), folder)
    assert checked.logits(ds) == pytest.approx(want, abs=1e-5)


def test_an_adapter_is_refused_on_other_base_weights(
    lora_run: Any, corpus: dict[str, Path]
) -> None:
    merged = lp.load(lora_run.artifact)
    with pytest.raises(ArtifactError, match="fingerprint") as info:
        load_adapter(base_model(corpus, "other", merged), lora_run.artifact)
    assert str(corpus["bert"]) in str(info.value)


def test_a_tampered_adapter_file_is_refused(lora_run: Any, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(lora_run.artifact, copy)
    config = copy / "adapter" / "adapter_config.json"
    config.write_text(config.read_text().replace('"r": 4', '"r": 5'))
    with pytest.raises(ArtifactError, match=r"adapter_config\.json"):
        load_adapter(TransferModel(lp.load(copy).model.backbone, torch.nn.Linear(1, 1)), copy)


# -- composition: LP-FT, WiSE-FT, layer-wise rates ---------------------------------------------


def test_lora_after_a_probe_sweeps_the_merged_delta_on_validation(
    corpus: dict[str, Path],
) -> None:
    result = run(
        corpus, "lora", "lora-wise", rank=2, probe=True, alphas=[0.0, 1.0], save_adapter=False
    )
    details = result.details
    assert details["chosen_on"] == "validation"
    assert [row["alpha"] for row in details["sweep"]] == [0.0, 1.0]
    assert details["alpha"] in (0.0, 1.0)
    assert details["probe"]["solver"] == "lbfgs"
    assert not (result.artifact / "adapter").exists()
    assert "adapter" not in json.loads((result.artifact / "lepton.json").read_text())["extra"]


def test_alpha_zero_is_the_pretrained_backbone_with_the_probed_head() -> None:
    """With alphas [0] the sweep puts every update back to its start: the backbone ends as it
    began, and the head is the probe's."""
    job = tiny_job(epochs=2, batchnorm=False)
    before = snapshot(job.model.backbone)
    probed = tiny_job(epochs=2, batchnorm=False)
    lp.create_strategy("linear-probe").run(probed)
    outcome = lp.create_strategy("lora", rank=2, probe=True, alphas=[0.0]).run(job)
    after = outcome.model.backbone.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.allclose(after[key], value, atol=1e-6), key
    for key, value in probed.model.head.state_dict().items():
        assert torch.allclose(outcome.model.head.state_dict()[key], value, atol=1e-5), key


def test_head_lr_and_layer_decay_set_the_rates_of_the_groups() -> None:
    from lepton_platform.engine.callbacks import Callback

    seen: dict[str, float] = {}

    class Rates(Callback):
        def on_train_start(self, trainer: Any) -> None:
            for group in trainer.optimizer.optimizer.param_groups:
                seen[group["name"]] = group.get("initial_lr", group["lr"])

    job = tiny_job(epochs=1, batchnorm=False)
    from lepton_platform.strategies.jobs import Engine

    job.engine = Engine([Rates()])
    lp.create_strategy(
        "lora", rank=2, head_lr=0.05, layer_decay=0.5, groups=["block1", "block2"]
    ).run(job)
    lr = job.config.lr
    assert seen["head"] == pytest.approx(0.05)
    assert seen["block2"] == pytest.approx(lr * 0.5)
    assert seen["block1"] == pytest.approx(lr * 0.25)


# -- IA3 and BitFit ----------------------------------------------------------------------------


def test_ia3_trains_one_scale_per_output_and_merges_them(corpus: dict[str, Path]) -> None:
    result = run(corpus, "ia3", "ia3", target_modules=["query", "value"])
    # one vector of the output size per adapted layer, and the head
    assert result.details["adapted_layers"] == 2 * LAYERS
    assert result.details["trainable_parameters"] == 2 * LAYERS * HIDDEN + HIDDEN * 2 + 2
    pretrained = lp.create_backbone("hf-text", pretrained=str(corpus["bert"])).state_dict()
    merged = lp.load(result.artifact).model.backbone.state_dict()
    changed = {k for k, v in pretrained.items() if not torch.equal(v, merged[k])}
    assert changed and all(k.endswith(("query.weight", "value.weight")) for k in changed)


def test_bitfit_trains_only_the_biases_and_the_head(corpus: dict[str, Path]) -> None:
    result = run(corpus, "bitfit", "bitfit")
    pretrained = lp.create_backbone("hf-text", pretrained=str(corpus["bert"]))
    biases = sum(p.numel() for n, p in pretrained.named_parameters() if n.endswith(".bias"))
    assert result.details["trainable_parameters"] == biases + HIDDEN * 2 + 2
    saved = lp.load(result.artifact).model.backbone.state_dict()
    changed = {k for k, v in pretrained.state_dict().items() if not torch.equal(v, saved[k])}
    assert changed and all(k.endswith(".bias") for k in changed)
    assert not (result.artifact / "adapter").exists()


# -- convolutional backbones -------------------------------------------------------------------


def test_lora_adapts_conv2d_layers_and_merges_them_exactly() -> None:
    job = tiny_conv_job(epochs=2)
    before = snapshot(job.model.backbone)
    outcome = lp.create_strategy("lora", rank=2, groups=["block1", "block2"]).run(job)
    model = outcome.model
    assert outcome.details["adapted_modules"] == ["block1.0", "block2.0"]
    assert set(model.backbone.state_dict()) == set(before)  # merged: the plain architecture
    changed = {k for k, v in model.backbone.state_dict().items() if not torch.equal(v, before[k])}
    assert {"block1.0.weight", "block2.0.weight"} <= changed
    # the merged model is a plain TinyConv: rebuilt from its state dict it gives the same outputs
    plain, _ = tiny_conv_model(seed=1)
    plain.load_state_dict(model.state_dict())
    batch = job.model.backbone.example_batch(4)
    model.eval()
    plain.eval()
    assert torch.allclose(plain(**batch), model(**batch), atol=1e-5)


# -- what is refused ---------------------------------------------------------------------------


def test_a_target_pattern_that_matches_nothing_names_it_and_the_modules_searched() -> None:
    job = tiny_job()
    strategy = lp.create_strategy("lora", target_modules=["block2.0", "attention.query"])
    with pytest.raises(ConfigError) as info:
        strategy.check(job.model, pretrained=True)
    message = str(info.value)
    assert "'attention.query'" in message
    assert "block1.* (Linear)" in message and "block2.* (BatchNorm1d)" in message


def test_a_pattern_on_a_layer_peft_cannot_adapt_is_refused() -> None:
    job = tiny_job()
    with pytest.raises(ConfigError, match="BatchNorm1d"):
        lp.create_strategy("lora", target_modules=r"block2\.1").check(job.model, pretrained=True)


class _Recurrent(Backbone):
    """A GRU encoder: no layer of a type peft adapts by default."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 8, batch_first=True)
        self.feature_dim = 8

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(inputs["features"].unsqueeze(1))
        return out[:, -1]

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("gru", (self.gru,))]

    def preprocessor(self) -> Preprocessor:
        return FeaturePreprocessor()

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, 4)}


@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_a_backbone_peft_cannot_adapt_is_refused_with_its_name(name: str) -> None:
    model = TransferModel(_Recurrent(), torch.nn.Linear(8, 3))
    with pytest.raises(ConfigError, match=r"_Recurrent.*cannot be adapted.*gru \(GRU\)"):
        lp.create_strategy(name).check(model, pretrained=True)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"alphas": [0.5]}, "set probe: true"),
        ({"target_modules": "("}, "not a valid regular expression"),
        ({"groups": ["nope"]}, r"layer group\(s\) \['nope'\] do not exist"),
        ({"save_adapter": "yes"}, "save_adapter must be true or false"),
    ],
)
def test_bad_parameters_are_refused_before_training(params: dict[str, Any], match: str) -> None:
    job = tiny_job()
    with pytest.raises(ConfigError, match=match):
        lp.create_strategy("lora", **params).check(job.model, pretrained=True)


def test_without_pretrained_weights_the_adapters_are_refused() -> None:
    job = tiny_job()
    for name in ("lora", "ia3", "bitfit"):
        with pytest.raises(ConfigError, match="needs pretrained weights"):
            lp.create_strategy(name).check(job.model, pretrained=False)


# -- resume ------------------------------------------------------------------------------------


class _Killed(Exception):
    pass


def test_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """LoRA on the kit's MLP, killed after step 5 of 16 (a checkpoint every 2 steps), then
    resumed: the adapter is put back with the same initial weights and continues."""
    from lepton_platform.engine.callbacks import Callback
    from lepton_platform.strategies.jobs import Engine

    class Crash(Callback):
        def on_step_end(self, trainer: Any, step: int, logs: Any) -> None:
            if step == 5:
                raise _Killed

    def job(folder: str, crash: bool = False, resume: bool = False) -> Any:
        j = tiny_job(epochs=2, batchnorm=False, checkpoint_every_steps=2)
        j.output_dir, j.resume = tmp_path / folder, resume
        j.engine = Engine([Crash()] if crash else [])
        return j

    def make() -> Any:
        return lp.create_strategy("lora", rank=2, groups=["block1", "block2"])

    whole = make().run(job("whole"))
    with pytest.raises(_Killed):
        make().run(job("killed", crash=True))
    resumed = make().run(job("killed", resume=True))
    for key, value in whole.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[key], value, atol=1e-6), key


def test_a_named_module_outside_the_layer_groups_still_trains() -> None:
    from lepton_platform.testing.tiny import TwoLayerBN

    class WithProjection(TwoLayerBN):
        """The kit's MLP with a last projection that no layer group holds."""

        def __init__(self) -> None:
            super().__init__(batchnorm=False)
            self.projection = torch.nn.Linear(16, 16)

        def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.projection(super().forward(**inputs))
            return out

    job = tiny_job(epochs=2, batchnorm=False)
    torch.manual_seed(0)
    job.model = TransferModel(WithProjection(), job.model.head)
    job.preprocessor = job.model.backbone.preprocessor()
    before = snapshot(job.model.backbone)
    outcome = lp.create_strategy("lora", rank=2, target_modules="projection", lr=0.05).run(job)
    after = outcome.model.backbone.state_dict()
    assert not torch.equal(after["projection.weight"], before["projection.weight"])
    assert torch.equal(after["block2.0.weight"], before["block2.0.weight"])
