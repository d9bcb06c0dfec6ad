"""Shared fixtures of the medical plugin's tests: small DICOM studies written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_medical.testing import write_dicom

torch.set_num_threads(1)

#: Raw identifiers written into the test files; they must never appear in any output.
PATIENTS = {
    "benign": ["SECRET-PID-1001", "SECRET-PID-1002", "SECRET-PID-1003", "SECRET-PID-1004"],
    "malignant": ["SECRET-PID-2001", "SECRET-PID-2002", "SECRET-PID-2003", "SECRET-PID-2004"],
}
NAME_OF = {pid: f"Surname{pid[-4:]}^Given" for ids in PATIENTS.values() for pid in ids}


@pytest.fixture
def dicom_study(tmp_path: Path) -> Path:
    """root/<class>/<file>.dcm: 8 patients, 3 files each (one MONOCHROME1, one multi-frame),
    CT values through slope 1 / intercept -1024; malignant images are brighter."""
    root = tmp_path / "study"
    rng = np.random.default_rng(0)
    for label, ids in PATIENTS.items():
        level = 1100 if label == "benign" else 1300
        for pid in ids:
            for k in range(3):
                stored = np.clip(rng.normal(level, 40, size=(12, 12)), 0, 4000).astype(np.int16)
                photometric = "MONOCHROME1" if k == 1 else "MONOCHROME2"
                if k == 1:  # MONOCHROME1 shows low values bright: store the inverse
                    stored = (4000 - stored).astype(np.int16)
                if k == 2:
                    stored = np.stack([stored, stored, stored])
                write_dicom(
                    root / label / f"{pid}_{k}.dcm",
                    stored,
                    patient_id=pid,
                    patient_name=NAME_OF[pid],
                    photometric=photometric,
                    slope=1.0,
                    intercept=-1024.0,
                )
    return root
