"""BreastMNIST (MedMNIST, real breast ultrasound) end to end: its own splits from the .npz, a small
1-channel ResNet from random init, AUROC on test above the majority-class baseline (0.5)."""

from __future__ import annotations

from pathlib import Path

import pytest

import lepton_platform as lp

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "breastmnist"


@pytest.mark.integration
@pytest.mark.slow
def test_breastmnist_beats_majority_baseline(tmp_path: Path) -> None:
    npz = DATA / "BreastMNIST.npz"
    if not npz.is_file():
        pytest.skip(f"BreastMNIST not found at {npz}")
    result = lp.transfer(
        domain="medical-image",
        data={"path": str(npz), "label_names": ["malignant", "benign"]},
        backbone="medical-resnet18",
        backbone_options={
            "small_input": True,
            "image_size": 28,
            "width": 16,
            "blocks": [1, 1, 1, 1],
            "augmentation": {"hflip": 0.5, "scale": [0.7, 1.0]},
        },
        strategy="finetune",
        task_options={"class_weights": [1.85, 0.68]},
        train={"epochs": 6, "batch_size": 32, "lr": 3e-3, "progress": False, "trackers": ()},
        metrics=["auroc", "balanced-accuracy", "sensitivity", "specificity", "ece"],
        output_dir=tmp_path / "run",
        bootstrap=200,
    )
    assert result.data_summary["rows"] == {"train": 546, "validation": 78, "test": 156}
    auroc = result.metrics["test"]["auroc"]
    print(f"BreastMNIST test AUROC {auroc:.3f}, CI {result.metrics['test']['ci']}")
    assert auroc > 0.75  # the majority-class baseline scores 0.5
    assert result.metrics["test"]["ci"]["low"] > 0.5
