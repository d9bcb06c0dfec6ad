"""Speaker transfer on real speech: spoken digits (FSDD), train on three speakers, test on the
fourth.

No pretrained speech weights exist offline, so a small wav2vec2 is trained from random weights
(feature encoder included) through the core's fine-tune engine, at the data's own 8 kHz. The
held-out speaker is never seen in training; chance is 10 %.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lepton_platform import create_backbone, create_domain, create_task
from lepton_platform.data import BadRecords
from lepton_platform.data.prepare import prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.models import TransferModel

FSDD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fsdd" / "recordings"

MODEL_CONFIG = {
    "hidden_size": 48,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "conv_dim": [32, 32, 32, 32],
    "conv_kernel": [10, 8, 4, 4],
    "conv_stride": [5, 4, 4, 2],  # 160x: 50 frames per second at 8 kHz
    "num_conv_pos_embeddings": 8,
    "num_conv_pos_embedding_groups": 4,
    "mask_time_prob": 0.0,
    "layerdrop": 0.0,
}


@pytest.mark.slow
@pytest.mark.integration
def test_digits_transfer_to_an_unseen_speaker(tmp_path: Path) -> None:
    if not FSDD.is_dir():
        pytest.skip(f"{FSDD} is absent (the shared FSDD data set)")
    torch.set_num_threads(1)
    domain = create_domain("speech")
    source = {"path": str(FSDD), "pattern": r"(?P<label>\d)_(?P<group>[a-z]+)_\d+\.wav"}
    data = domain.load(source, bad_records=BadRecords())
    assert len(data) == 2000 and sorted(set(data["group"])) == [
        "george",
        "jackson",
        "nicolas",
        "theo",
    ]
    groups = data["group"]
    train = data.select([i for i, g in enumerate(groups) if g != "theo"])
    test = data.select([i for i, g in enumerate(groups) if g == "theo"])

    torch.manual_seed(0)
    backbone = create_backbone(
        "wav2vec2-base",
        pretrained=None,
        model_config=MODEL_CONFIG,
        sampling_rate=8000,
        max_duration=0.8,
        train_feature_encoder=True,  # from random weights the encoder must learn too
    )
    pre = backbone.preprocessor()
    train_ready = prepare(train, pre, cache=tmp_path)
    test_ready = prepare(test, pre, cache=tmp_path)
    task = create_task("classification", label_names=data.features["label"].names)
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    config = TrainConfig(
        epochs=6,
        batch_size=32,
        lr=3e-3,
        scheduler="cosine",
        warmup_ratio=0.05,
        weight_decay=0.01,
        progress=False,
        trackers=(),
        seed=0,
    )
    trainer = Trainer(model, task, config)
    result = trainer.fit(train_ready, None, pre)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    logits, labels = trainer.predict(test_ready, pre)
    assert labels is not None
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    print(f"FSDD, unseen speaker 'theo': accuracy {accuracy:.3f} (chance 0.100)")
    assert accuracy > 0.35, f"accuracy on the unseen speaker is {accuracy:.3f}"
