"""Array sources of the image domain: .npz with named arrays, HDF5 with dataset paths (a digits
set as it ships: train/data, train/target), .npy pairs, channels-first arrays, and the checks
that name the file, the array and the index of the first bad item."""

from __future__ import annotations

from pathlib import Path

import datasets
import h5py
import numpy as np
import pytest
from lepton_image.domain import ImageDomain
from lepton_image.preprocessing import ImagePreprocessor

import lepton_platform as lp
from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError


def _load(source: dict[str, object], policy: str = "error") -> datasets.Dataset:
    ds = ImageDomain().load(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def _pixels(ref: object, size: int = 8, channels: int = 1) -> np.ndarray:
    prep = ImagePreprocessor(
        image_size=size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels
    )
    raw = prep.transform({"image": [ref]})["pixel_values"][0]
    return np.frombuffer(raw, dtype=np.uint8).reshape(size, size, channels)


def _digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 'digits' with values 0..16, as scikit-learn's digits set stores them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = np.zeros((n, 8, 8))
    for i, label in enumerate(labels):
        images[i, :, 2 * label : 2 * label + 2] = 16.0
    return np.clip(images + rng.normal(0, 0.5, images.shape), 0, 16), labels


@pytest.fixture
def digits_h5(tmp_path: Path) -> Path:
    path = tmp_path / "digits.h5"
    with h5py.File(path, "w") as handle:
        for split, n, seed in (("train", 30, 0), ("test", 9, 1)):
            images, labels = _digits(n, seed)
            handle.create_dataset(f"{split}/data", data=images)
            handle.create_dataset(f"{split}/target", data=labels)
    return path


def test_hdf5_with_dataset_paths(digits_h5: Path) -> None:
    source = {
        "path": str(digits_h5),
        "images_key": "train/data",
        "labels_key": "train/target",
        "value_range": [0, 16],
    }
    ds = _load(source)
    assert len(ds) == 30 and ds.features["label"].names == ["0", "1", "2"]
    first = _pixels(ds[0]["image"])  # label 0: the two left columns are bright
    assert first[:, :2].mean() > 200 and first[:, 4:].mean() < 40
    bundle = lp.load_data(
        "image",
        [
            {**source, "split": "train"},
            {
                "path": str(digits_h5),
                "images_key": "test/data",
                "labels_key": "test/target",
                "value_range": [0, 16],
                "split": "test",
            },
        ],
        split={"validation": 0.2, "seed": 0},
    )
    assert [len(bundle[s]) for s in ("train", "validation", "test")] == [24, 6, 9]


def test_npz_with_named_arrays_and_npy_pair(tmp_path: Path) -> None:
    images, labels = _digits(12)
    np.savez(tmp_path / "d.npz", x_train=images, y_train=labels)
    ds = _load({"path": str(tmp_path / "d.npz"), "images_key": "x_train", "labels_key": "y_train"})
    assert ds["label"] == labels.tolist()
    np.save(tmp_path / "x.npy", (images * 15).astype(np.uint8))
    np.save(tmp_path / "y.npy", np.array(["a", "b", "c"] * 4))
    pair = _load({"path": str(tmp_path / "x.npy"), "labels_path": str(tmp_path / "y.npy")})
    assert pair.features["label"].names == ["a", "b", "c"] and len(pair) == 12
    unlabelled = ImageDomain().load_unlabelled(
        {"path": str(tmp_path / "x.npy")}, bad_records=BadRecords()
    )
    assert unlabelled.column_names == ["image"] and len(unlabelled) == 12


def test_channels_first_arrays(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 4, 5), dtype=np.uint8)  # (N, C, H, W)
    rgb[:, 0] = 200  # red
    ds = _load({"images": rgb, "labels": [0, 1]})
    pixels = _pixels(ds[0]["image"], size=4, channels=3)
    assert pixels[..., 0].min() == 200 and pixels[..., 1].max() == 0
    with pytest.raises(DataError, match=r"layout NHWC"):
        _load({"images": rgb, "labels": [0, 1], "layout": "NHWC"})


def test_errors_name_the_file_the_array_and_the_item(tmp_path: Path, digits_h5: Path) -> None:
    with pytest.raises(DataError, match=r"digits\.h5: no dataset 'data'.*'train/data'"):
        _load({"path": str(digits_h5), "images_key": "data", "labels_key": "train/target"})
    with pytest.raises(DataError, match=r"'train' \(images_key\) is a group"):
        _load({"path": str(digits_h5), "images_key": "train", "labels_key": "train/target"})
    with pytest.raises(DataError, match=r"'train/data' holds 30 images but 'test/target' holds 9"):
        _load({"path": str(digits_h5), "images_key": "train/data", "labels_key": "test/target"})
    images, labels = _digits(6)
    images[4, 0, 0] = np.nan
    images[2, 1, 1] = 17.5
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    source = {"path": str(tmp_path / "bad.npz"), "value_range": [0, 16]}
    with pytest.raises(
        DataError, match=r"bad\.npz, row 2: image 2 of 'images' has values .* 17\.5"
    ):
        _load(source)
    records = BadRecords("skip")
    kept = ImageDomain().load(source, bad_records=records)
    assert len(kept) == 4 and [r.row for r in records] == [2, 4]
    assert "NaN" in records.records[1].reason
    with pytest.raises(DataError, match=r"no array 'labels' \(labels_key\); arrays present"):
        np.savez(tmp_path / "only.npz", images=images)
        _load({"path": str(tmp_path / "only.npz")})
    with pytest.raises(DataError, match=r"'images' has shape \(2, 5, 4, 7\)"):
        _load({"images": np.zeros((2, 5, 4, 7)), "labels": [0, 1]})
    with pytest.raises(DataError, match="one label per image"):
        _load({"images": np.zeros((2, 4, 4)), "labels": np.zeros((2, 3))})
    with pytest.raises(DataError, match=r"'images' has dtype <U1"):
        _load({"images": np.array([[["a"]]]), "labels": [0]})
    with pytest.raises(DataError, match=r"over max_pixels=10"):
        ImageDomain(max_pixels=10).load(
            {"images": np.zeros((1, 4, 4)), "labels": [0]}, bad_records=BadRecords()
        )
    with pytest.raises(DataError, match=r"row 1: label -1 of image 1"):
        _load({"images": np.zeros((2, 4, 4)), "labels": [0, -1]})


def test_unknown_source_keys_are_refused(digits_h5: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'lable_column' is unknown; did you mean 'label_column'"
    ):
        _load({"path": str(digits_h5), "lable_column": "y"})
    with pytest.raises(ConfigError, match=r"'image_key' is unknown; did you mean 'images_key'"):
        _load({"path": str(digits_h5), "image_key": "train/data"})


def test_a_hub_data_set_of_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``{"hub": ...}``: the data layer loads the data set (here a local repository folder in
    the Hub's imagefolder layout, read offline) and the image domain reads its Image column."""
    from lepton_image.testing import write_image

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    for split, n in (("train", 8), ("test", 4)):
        for label in ("cat", "dog"):
            for i in range(n):
                write_image(
                    repo / split / label / f"{i}.png", seed=i + (50 if label == "dog" else 0)
                )
    bundle = lp.load_data(
        "image",
        [{"hub": str(repo), "split": "train"}, {"hub": str(repo), "split": "test"}],
        split={"validation": 0.25, "seed": 0},
    )
    assert bundle.label_names == ["cat", "dog"]
    assert [len(bundle[s]) for s in ("train", "validation", "test")] == [12, 4, 8]
    assert bundle.train.features["image"] == datasets.Image(decode=False)
    with pytest.raises(DataError, match=r"hub data set 'nobody/none'.*offline"):
        lp.load_data("image", {"hub": "nobody/none", "split": "train"})
