"""The medical-image domain on real files: DICOM (pydicom), NIfTI (nibabel), 8/16-bit PNG and
TIFF, MedMNIST .npz; intensity handling; patient grouping through load_data."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from lepton_medical.domain import MedicalImageDomain
from lepton_medical.intensity import WINDOW_PRESETS, Intensity, window_to_uint8
from lepton_medical.privacy import hash_patient
from lepton_medical.testing import write_dicom, write_nifti
from PIL import Image

from lepton_platform import load_data
from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError

from .conftest import PATIENTS


def pixels(ds: datasets.Dataset, row: int) -> np.ndarray:
    with Image.open(io.BytesIO(ds[row]["image"]["bytes"])) as image:
        assert image.mode == "L"
        return np.asarray(image)


def load(source: dict, domain: MedicalImageDomain | None = None, policy: str = "error"):
    return (domain or MedicalImageDomain()).load(source, bad_records=BadRecords(policy))


# -- DICOM -----------------------------------------------------------------------------------


def test_dicom_folder_schema_groups_and_frames(dicom_study: Path) -> None:
    ds = load({"path": str(dicom_study)})
    assert isinstance(ds, datasets.Dataset)
    assert ds.features["label"].names == ["benign", "malignant"]
    assert ds.column_names == ["image", "label", "group"]
    assert len(ds) == 8 * 3  # the multi-frame file gives its middle frame
    assert ds[0]["image"]["path"] is None  # no file path (it may name a patient)
    expected = {hash_patient(pid) for ids in PATIENTS.values() for pid in ids}
    assert set(ds["group"]) == expected
    every = load({"path": str(dicom_study), "frames": "all"})
    assert len(every) == 8 * (2 + 3)


def test_rescale_and_window_from_file_and_preset(tmp_path: Path) -> None:
    stored = np.array([[0, 1024, 1064, 2048]], dtype=np.int16)  # HU -1024, 0, 40, 1024
    file = write_dicom(tmp_path / "ct.dcm", stored, slope=1.0, intercept=-1024.0, window=(40, 80))
    from_file = pixels(load({"path": str(file), "label": "x"}), 0)
    assert from_file.tolist() == [[0, 0, 128, 255]]  # brain-like window 0..80 HU
    lung = pixels(load({"path": str(file), "label": "x", "window": "lung"}), 0)
    assert lung.tolist() == window_to_uint8(np.array([[-1024, 0, 40, 1024]]), -600, 1500).tolist()
    assert lung.tolist() == [[55, 230, 236, 255]]  # (HU + 1350) / 1500 * 255
    custom = pixels(load({"path": str(file), "label": "x", "window": {"center": 0, "width": 2}}), 0)
    assert custom.tolist() == [[0, 128, 255, 255]]
    # slope 2: stored 512 is HU 0
    doubled = write_dicom(tmp_path / "s2.dcm", stored // 2, slope=2.0, intercept=-1024.0)
    soft = pixels(load({"path": str(doubled), "label": "x", "window": "soft-tissue"}), 0)
    assert soft.tolist() == window_to_uint8(np.array([[-1024, 0, 40, 1024]]), 40, 400).tolist()


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.arange(16, dtype=np.int16).reshape(4, 4) * 100
    m2 = write_dicom(tmp_path / "m2.dcm", stored, photometric="MONOCHROME2")
    m1 = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    a = pixels(load({"path": str(m2), "label": "x"}), 0)
    b = pixels(load({"path": str(m1), "label": "x"}), 0)
    assert a[0, 0] == 0 and a[-1, -1] == 255
    assert (b.astype(int) == 255 - a.astype(int)).all()


def test_multiframe_chosen_frames(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 4), v, dtype=np.int16) for v in (0, 100, 200)])
    frames[:, 0, 0] = 300  # a fixed range makes each frame's level visible
    file = write_dicom(tmp_path / "mf.dcm", frames)
    source = {"path": str(file), "label": "x", "normalize": {"range": [0, 300]}}
    assert len(load({**source, "frames": "all"})) == 3
    picked = load({**source, "frames": [0, -1]})
    assert [int(pixels(picked, i)[1, 1]) for i in range(2)] == [0, 170]
    assert int(pixels(load(source), 0)[1, 1]) == 85  # middle by default
    with pytest.raises(DataError, match="frames index 5"):
        load({**source, "frames": 5})


# -- NIfTI, PNG, TIFF ------------------------------------------------------------------------


def test_nifti_slices_and_projections(tmp_path: Path) -> None:
    volume = np.zeros((4, 5, 3))
    volume[..., 0], volume[..., 1], volume[..., 2] = 10.0, 20.0, 30.0
    volume[0, 0, :] = [40.0, 50.0, 60.0]
    file = write_nifti(tmp_path / "v.nii.gz", volume)
    fixed = {"path": str(file), "label": "x", "normalize": {"range": [0, 60]}}
    assert len(load({**fixed, "slices": "all"})) == 3
    middle = pixels(load(fixed), 0)
    assert middle.shape == (5, 4)  # rotated for display
    assert sorted(set(middle.ravel().tolist())) == [85, 212]  # 20 and 50 of 60
    maximum = pixels(load({**fixed, "slices": "max"}), 0)
    assert sorted(set(maximum.ravel().tolist())) == [128, 255]  # 30 and 60
    mean = pixels(load({**fixed, "slices": "mean"}), 0)
    assert sorted(set(mean.ravel().tolist())) == [85, 212]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8_and_16_bit_images(tmp_path: Path, suffix: str) -> None:
    eight = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    sixteen = np.linspace(1000, 3000, 16).astype(np.uint16).reshape(4, 4)
    Image.fromarray(eight).save(tmp_path / f"a8{suffix}")
    Image.fromarray(sixteen).save(tmp_path / f"a16{suffix}")
    kept = pixels(load({"path": str(tmp_path / f"a8{suffix}"), "label": "x"}), 0)
    assert (kept == eight).all()  # 8-bit data is kept as it is
    stretched = pixels(load({"path": str(tmp_path / f"a16{suffix}"), "label": "x"}), 0)
    assert stretched.min() == 0 and stretched.max() == 255  # 16-bit: per-image stretch
    full = pixels(
        load({"path": str(tmp_path / f"a16{suffix}"), "label": "x", "normalize": "none"}), 0
    )
    assert full.tolist() == np.rint(sixteen / 257.0).astype(np.uint8).tolist()


def test_dataset_normalisation_shares_one_range(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    for i, level in enumerate((1000, 2000, 3000)):
        image = np.full((4, 4), level, dtype=np.uint16)
        image[0, 0] = level + 100
        Image.fromarray(image).save(folder / f"{i}.png")
    per_image = load({"path": str(folder), "label": "x", "normalize": "image"})
    assert [int(pixels(per_image, i)[1, 1]) for i in range(3)] == [0, 0, 0]
    shared = load({"path": str(folder), "label": "x", "normalize": "dataset"})
    # one range 1000..3100 for all: levels stay comparable between images
    assert [int(pixels(shared, i)[1, 1]) for i in range(3)] == [0, 121, 243]


def test_table_source_hashes_its_group_column(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(np.full((4, 4), 60 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "list.csv").write_text(
        "path,label,patient\n0.png,a,Alice Smith\n1.png,b,Alice Smith\n2.png,a,Bob\n3.png,b,Bob\n"
    )
    ds = load({"path": str(tmp_path / "list.csv"), "group_column": "patient"})
    assert ds["group"] == [hash_patient("Alice Smith")] * 2 + [hash_patient("Bob")] * 2
    assert "Alice" not in str(ds.to_dict())


# -- MedMNIST --------------------------------------------------------------------------------


def test_medmnist_npz_gives_its_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{prefix}_images"] = rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)
        arrays[f"{prefix}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(tmp_path / "mini.npz", **arrays)
    dsd = load({"path": str(tmp_path / "mini.npz"), "label_names": ["malignant", "benign"]})
    assert isinstance(dsd, datasets.DatasetDict)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 8, "validation": 4, "test": 4}
    assert dsd["train"].features["label"].names == ["malignant", "benign"]
    assert (pixels(dsd["test"], 2) == arrays["test_images"][2]).all()
    bundle = load_data("medical-image", {"path": str(tmp_path / "mini.npz")})
    assert [len(bundle[s]) for s in ("train", "validation", "test")] == [8, 4, 4]


# -- options ---------------------------------------------------------------------------------


def test_intensity_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"unknown window preset 'lungs'.*lung"):
        Intensity.from_options({"window": "lungs"})
    with pytest.raises(ConfigError, match="normalize must be one of"):
        Intensity.from_options({"normalize": "global"})
    with pytest.raises(ConfigError, match="percentiles"):
        Intensity.from_options({"percentiles": [50, 10]})
    assert {"lung", "mediastinum", "soft-tissue", "bone", "brain"} <= set(WINDOW_PRESETS)


def test_from_inputs_reads_paths_and_arrays(dicom_study: Path) -> None:
    domain = MedicalImageDomain(window="soft-tissue")
    files = sorted(dicom_study.rglob("*.dcm"))[:2]
    ds = domain.from_inputs([*map(str, files), np.full((5, 5), 40.0)])
    assert ds.column_names == ["image"] and len(ds) == 3
    assert int(pixels(ds, 2)[0, 0]) == 128
    with pytest.raises(DataError, match="input 0"):
        domain.from_inputs([12])
