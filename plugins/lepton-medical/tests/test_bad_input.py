"""Bad medical files: each is a DataError naming the file, or skipped and listed on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lepton_medical.domain import MedicalImageDomain
from lepton_medical.testing import write_dicom, write_nifti

from lepton_platform import load_data
from lepton_platform.data import BadRecords
from lepton_platform.errors import DataError


def _bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    """One bad file of each kind in root/bad/, with the words its error must hold."""
    image = np.arange(36, dtype=np.int16).reshape(6, 6)
    nan_volume = np.ones((4, 4, 3))
    nan_volume[1, 2, 1] = np.nan
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "notes.dcm").write_text("Discharge letter, not an image\n")
    return {
        "no pixels": (
            write_dicom(root / "bad" / "header_only.dcm", image, with_pixels=False),
            "no pixel data",
        ),
        "compressed": (
            write_dicom(root / "bad" / "jpeg.dcm", image, compressed=True),
            "JPEG Baseline",
        ),
        "not dicom": (root / "bad" / "notes.dcm", "not a DICOM file"),
        "nan": (write_nifti(root / "bad" / "nan.nii.gz", nan_volume), "NaN"),
    }


def test_each_bad_file_is_a_data_error_with_its_path(tmp_path: Path) -> None:
    domain = MedicalImageDomain()
    for what, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as info:
            domain.load({"path": str(path), "label": "x"}, bad_records=BadRecords())
        message = str(info.value)
        assert str(path) in message, what
        assert words in message, (what, message)
        assert "on_bad_record: skip" in message


def test_skipping_lists_every_bad_file(tmp_path: Path) -> None:
    bad = _bad_files(tmp_path / "data" / "x")
    good = tmp_path / "data" / "y"
    for i in range(3):
        write_dicom(good / f"{i}.dcm", np.full((6, 6), i, dtype=np.int16), patient_id=f"P{i}")
    for i in range(2):
        write_dicom(
            tmp_path / "data" / "x" / f"ok{i}.dcm", np.ones((6, 6), np.int16), patient_id=f"Q{i}"
        )
    records = BadRecords("skip")
    ds = MedicalImageDomain().load({"path": str(tmp_path / "data")}, bad_records=records)
    assert len(ds) == 5
    listed = {r.file for r in records}
    assert listed == {str(p) for p, _ in bad.values()}
    assert all(r.reason for r in records)


def test_npz_without_the_expected_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 4, 4)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"wrong\.npz.*train_images.*arrays present: \['x', 'y'\]"):
        load_data("medical-image", {"path": str(tmp_path / "wrong.npz")})
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"broken\.npz"):
        load_data("medical-image", {"path": str(tmp_path / "broken.npz")})


def test_missing_patient_id_in_a_grouped_source(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a" / "1.dcm", np.ones((4, 4), np.int16), patient_id="P1")
    write_dicom(tmp_path / "a" / "2.dcm", np.ones((4, 4), np.int16), patient_id="")
    with pytest.raises(DataError, match=r"2\.dcm.*no patient id"):
        MedicalImageDomain().load(
            {"path": str(tmp_path / "a"), "label": "x"}, bad_records=BadRecords()
        )
