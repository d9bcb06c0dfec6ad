"""Patient-level grouping through the data layer, and no raw patient identifier anywhere: not in
the prepared data, the saved model folder, nor any file of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lepton_medical.privacy import hash_patient
from lepton_medical.testing import write_dicom

import lepton_platform as lp
from lepton_platform import load_data
from lepton_platform.data import SplitConfig
from lepton_platform.data.schema import column_values
from lepton_platform.errors import DataError

from .conftest import NAME_OF, PATIENTS

TINY = {"small_input": True, "image_size": 16, "width": 8, "blocks": [1, 1, 1, 1]}


def test_split_keeps_each_patient_in_one_split(dicom_study: Path) -> None:
    for seed in range(3):
        bundle = load_data(
            "medical-image", {"path": str(dicom_study)}, split=SplitConfig(0.25, 0.25, seed=seed)
        )
        members = {
            s: set(column_values(bundle[s], "group")) for s in ("train", "validation", "test")
        }
        assert all(members.values())
        assert not members["train"] & members["validation"]
        assert not members["train"] & members["test"]
        assert not members["validation"] & members["test"]
        assert sum(len(m) for m in members.values()) == 8


def test_given_splits_that_share_a_patient_are_refused(tmp_path: Path) -> None:
    image = np.ones((6, 6), np.int16)
    for i, pid in enumerate(["TRAIN-A", "TRAIN-B", "TRAIN-C", "TRAIN-D", "LEAKY-PATIENT-77"]):
        write_dicom(
            tmp_path / "train" / ("a" if i % 2 else "b") / f"{i}.dcm", image, patient_id=pid
        )
    write_dicom(tmp_path / "test" / "a" / "t.dcm", image, patient_id="LEAKY-PATIENT-77")
    write_dicom(tmp_path / "test" / "b" / "u.dcm", image, patient_id="TEST-Z")
    sources = [
        {"path": str(tmp_path / "train"), "split": "train"},
        {"path": str(tmp_path / "test"), "split": "test"},
    ]
    with pytest.raises(DataError, match="appear in more than one split") as info:
        load_data("medical-image", sources, split=SplitConfig(0.2, 0.2))
    assert "LEAKY" not in str(info.value)
    assert hash_patient("LEAKY-PATIENT-77") not in str(info.value)  # shown re-hashed


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_no_raw_identifier_in_data_model_or_run(
    dicom_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(cache))
    run = tmp_path / "run"
    result = lp.transfer(
        domain="medical-image",
        data={"path": str(dicom_study)},
        split={"validation": 0.25, "test": 0.25},
        backbone="medical-resnet18",
        backbone_options=TINY,
        strategy="finetune",
        train={"epochs": 1, "batch_size": 8, "progress": False, "trackers": ()},
        output_dir=run,
        bootstrap=20,
    )
    assert result.artifact is not None and (result.artifact / "lepton.json").is_file()
    secrets = [pid for ids in PATIENTS.values() for pid in ids] + list(NAME_OF.values())
    secrets += [name.split("^")[0] for name in NAME_OF.values()]
    files = _all_bytes(run) + _all_bytes(cache)
    assert len(files) > 3
    for path, data in files:
        for secret in secrets:
            assert secret.encode() not in data, f"{secret} found in {path}"
    # the groups are there, hashed, and the reloaded model predicts on raw DICOM files
    assert result.data_summary["groups"] == {"train": 4, "validation": 2, "test": 2}
    predictor = lp.load(result.artifact)
    files_in = sorted(dicom_study.rglob("*.dcm"))[:3]
    assert len(predictor.predict([str(f) for f in files_in])) == 3
