"""Unlabelled target scans (domain adaptation): folders without class structure, single files,
labelled sources with labels and patients dropped, bad files, and CORAL adapting to a folder."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from lepton_medical.domain import MedicalImageDomain
from lepton_medical.testing import write_dicom, write_nifti
from PIL import Image

import lepton_platform as lp
from lepton_platform.data import BadRecords, load_unlabelled
from lepton_platform.errors import ConfigError, DataError


def unlabelled(source: dict[str, object], policy: str = "error") -> datasets.Dataset:
    ds = MedicalImageDomain().load_unlabelled(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def _scan(path: Path, level: int, patient: str = "PAT-1") -> Path:
    stored = np.full((8, 8), level, dtype=np.int16)
    stored[2:5, 2:5] += 200
    return write_dicom(path, stored, patient_id=patient, slope=1.0, intercept=-1024.0)


def test_a_folder_of_scans_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "site-b"
    _scan(root / "s1.dcm", 900)
    _scan(root / "2024" / "s2.dcm", 1000, patient="PAT-2")
    write_nifti(root / "2024" / "ct.nii.gz", np.random.default_rng(0).normal(size=(6, 6, 3)))
    Image.fromarray(np.full((6, 6), 7, np.uint16)).save(root / "x.png")
    (root / "README").write_text("ignored")
    ds = unlabelled({"path": str(root), "window": "lung"})
    assert ds.column_names == ["image"] and len(ds) == 4  # no label, no patient group
    every = unlabelled({"path": str(root / "2024"), "slices": "all"})  # a flat folder
    assert len(every) == 1 + 3
    with pytest.raises(DataError, match="no class subfolders"):  # which load refuses
        MedicalImageDomain().load({"path": str(root / "2024")}, bad_records=BadRecords())


def test_labelled_sources_read_without_labels(dicom_study: Path, tmp_path: Path) -> None:
    ds = unlabelled({"path": str(dicom_study)})
    assert ds.column_names == ["image"] and len(ds) == 8 * 3
    file = next(dicom_study.rglob("*.dcm"))
    assert len(unlabelled({"path": str(file)})) == 1  # one file needs no 'label'
    with pytest.raises(ConfigError, match="needs 'label'"):
        MedicalImageDomain().load({"path": str(file)}, bad_records=BadRecords())
    (tmp_path / "list.csv").write_text(f"path\n{file}\n")
    assert len(unlabelled({"path": str(tmp_path / "list.csv")})) == 1
    np.savez(
        tmp_path / "mnist.npz",
        train_images=np.zeros((3, 4, 4), np.uint8),
        train_labels=np.zeros((3, 1)),
        test_images=np.zeros((2, 4, 4), np.uint8),
    )
    splits = MedicalImageDomain().load_unlabelled(
        {"path": str(tmp_path / "mnist.npz")}, bad_records=BadRecords()
    )
    assert isinstance(splits, datasets.DatasetDict)
    assert {k: v.column_names for k, v in splits.items()} == {"train": ["image"], "test": ["image"]}
    files = [str(p) for p in sorted(dicom_study.rglob("*.dcm"))[:3]]
    assert len(load_unlabelled(MedicalImageDomain(), files)) == 3


def test_bad_files_are_named_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "target"
    _scan(root / "ok.dcm", 900)
    letter = root / "sub" / "letter.dcm"
    letter.parent.mkdir(parents=True)
    letter.write_text("Discharge letter, not an image\n")
    with pytest.raises(DataError, match=f"{letter}: not a DICOM file"):
        unlabelled({"path": str(root)})
    bad = BadRecords("skip")
    ds = MedicalImageDomain().load_unlabelled({"path": str(root)}, bad_records=bad)
    assert [r.file for r in bad] == [str(letter)] and len(ds) == 1
    assert len(load_unlabelled(MedicalImageDomain(), str(root), on_bad_record="skip")) == 1


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "series").mkdir(parents=True)
    (tmp_path / "empty" / "DICOMDIR").write_bytes(b"")
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: the folder holds no image files"):
        unlabelled({"path": str(tmp_path / "empty")})


def test_coral_adapts_to_a_folder_of_scans(
    dicom_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(5):
        _scan(tmp_path / "target" / f"{i}.dcm", 1150 + 20 * i, patient=f"OTHER-{i}")
    torch.manual_seed(0)
    result = lp.transfer(
        domain="medical-image",
        data={"path": str(dicom_study)},
        split={"validation": 0.25, "test": 0.25},
        backbone="medical-resnet18",
        backbone_options=lp.get_backbone("medical-resnet18").tiny_options,
        strategy="coral",
        train={"epochs": 1, "batch_size": 8, "progress": False, "trackers": ()},
        unlabelled_target=str(tmp_path / "target"),
        bootstrap=0,
    )
    assert result.details["target_examples"] == 5
