"""Colour medical images (the ``channels`` policy, per-channel intensity, the stem adaptation in
the load report), array sources (.npz, .npy, HDF5, in memory), ``datasets.Dataset`` sources,
unknown source keys, and the size checks of NIfTI volumes and images."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import datasets
import h5py
import numpy as np
import pytest
import torch
from lepton_medical.domain import MedicalImageDomain
from lepton_medical.intensity import Intensity
from lepton_medical.readers import Limits, ReadError, read_nifti
from PIL import Image

import lepton_platform as lp
from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError

TINY = {"small_input": True, "image_size": 16, "width": 8, "blocks": [1, 1, 1, 1]}
#: Two stains of the same luminance (0.299 R + 0.587 G + 0.114 B = 124.89 for both):
#: made grey, the smears of both look alike; only the colour tells them apart.
STAINS = {"eosin": (180, 90, 160), "methylene": (72, 132, 227)}


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _smear(rng: np.random.Generator, stain: tuple[int, int, int]) -> np.ndarray:
    """A 16x16 'smear': a pale background and a few stained cells of random size and strength."""
    image = np.full((16, 16, 3), 235.0)
    yy, xx = np.mgrid[:16, :16]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx, r = rng.integers(3, 13), rng.integers(3, 13), rng.uniform(1.5, 3.5)
        cell = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        strength = rng.uniform(0.6, 1.0)
        image[cell] = strength * np.array(stain) + (1 - strength) * 235.0
    image += rng.normal(0, 6, size=(16, 16, 1))  # the same noise in every channel
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture
def smears(tmp_path: Path) -> Path:
    """root/<stain>/<i>.png: 40 colour smears of each stain (RGB PNG files)."""
    assert abs(_luma(STAINS["eosin"]) - _luma(STAINS["methylene"])) < 0.01
    rng = np.random.default_rng(0)
    root = tmp_path / "smears"
    for name, stain in STAINS.items():
        (root / name).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(_smear(rng, stain), mode="RGB").save(root / name / f"{i}.png")
    return root


def _load(source: dict[str, Any], domain: MedicalImageDomain | None = None, **kw: Any) -> Any:
    return (domain or MedicalImageDomain(**kw)).load(source, bad_records=BadRecords())


def _decoded(ref: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(ref["bytes"]))


def test_channel_policy_keeps_or_drops_colour(smears: Path, tmp_path: Path) -> None:
    grey = _load({"path": str(smears)})
    rgb = _load({"path": str(smears), "channels": "rgb"})
    assert _decoded(grey[0]["image"]).mode == "L" and _decoded(rgb[0]["image"]).mode == "RGB"
    assert _load({"path": str(smears)}, channels="auto")[0]["image"] == rgb[0]["image"]
    pixels = np.asarray(_decoded(rgb[0]["image"]))
    original = np.asarray(Image.open(smears / "eosin" / "0.png"))
    assert np.array_equal(pixels, original)  # 8-bit colour is kept as it is
    # a grey source stays grey under auto, and is repeated in three channels under rgb
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(tmp_path / "g.png")
    source = {"path": str(tmp_path / "g.png"), "label": "x"}
    assert _decoded(_load(source, channels="auto")[0]["image"]).mode == "L"
    repeated = np.asarray(_decoded(_load({**source, "channels": "rgb"})[0]["image"]))
    assert repeated.shape == (8, 8, 3) and (repeated == 77).all()
    # a grey backbone given colour data says so (colour would be lost silently otherwise)
    prep = lp.create_backbone("medical-resnet18", pretrained=None, **TINY).preprocessor()
    with pytest.warns(UserWarning, match="colour never reaches the model"):
        prep.transform({"image": [rgb[0]["image"]]})
    with pytest.raises(ConfigError, match="channels must be one of grey, rgb, auto"):
        _load({"path": str(smears), "channels": "cmyk"})


def _accuracy(smears: Path, channels: str, in_channels: int) -> float:
    torch.manual_seed(0)
    result = lp.transfer(
        domain="medical-image",
        domain_options={"channels": channels},
        data={"path": str(smears)},
        split={"validation": 0.25, "test": 0.25, "seed": 0},
        backbone="medical-resnet18",
        backbone_options={**TINY, "in_channels": in_channels},
        strategy="linear-probe",
        train={"epochs": 30, "batch_size": 16, "lr": 0.05, "progress": False, "trackers": ()},
        save=False,
        bootstrap=0,
    )
    return float(result.metrics["test"]["accuracy"])


def test_two_stains_are_learned_in_colour_and_not_in_grey(
    smears: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Colour is the only signal: with ``channels: rgb`` (and a 3-channel stem) the stains are
    told apart; made grey they are not (chance is 0.5 on the 20 balanced test smears)."""
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    colour = _accuracy(smears, "rgb", 3)
    grey = _accuracy(smears, "grey", 1)
    print(f"two stains: test accuracy {colour:.2f} in colour, {grey:.2f} in grey")
    assert colour >= 0.9
    assert grey <= 0.75


def test_colour_dicom(tmp_path: Path) -> None:
    from lepton_medical.testing import write_colour_dicom

    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 40
    file = write_colour_dicom(tmp_path / "derm.dcm", rgb)
    kept = np.asarray(
        _decoded(_load({"path": str(file), "label": "x", "channels": "rgb"})[0]["image"])
    )
    assert np.array_equal(kept, rgb)
    grey = np.asarray(_decoded(_load({"path": str(file), "label": "x"})[0]["image"]))
    assert grey.shape == (6, 5) and len(np.unique(grey)) == 1  # luminance, stretched per image


def test_stem_adaptation_between_grey_and_colour_is_in_the_load_report(tmp_path: Path) -> None:
    """A grey (1-channel) source model into a colour backbone: the one filter repeated over the
    three channels and scaled by 1/3 (a grey image gives the same responses); the other way
    round the three filters are summed. Both are listed as adapted in the load report."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    grey = lp.create_backbone("medical-resnet18", pretrained=None, **TINY)
    saved = tmp_path / "grey.safetensors"
    save_file({k: v.contiguous() for k, v in grey.state_dict().items()}, str(saved))
    colour = lp.create_backbone(
        "medical-resnet18", pretrained=str(saved), **{**TINY, "in_channels": 3}
    )
    report = colour.load_report
    assert report is not None and report.adapted == ["conv1.weight"] and not report.mismatched
    assert report.to_json()["adapted"] == ["conv1.weight"]
    assert torch.allclose(colour.conv1.weight, grey.conv1.weight.repeat(1, 3, 1, 1) / 3)
    image = torch.rand(2, 1, 16, 16)
    grey.eval()
    colour.eval()
    with torch.no_grad():
        expected = grey(pixel_values=image)
        assert torch.allclose(colour(pixel_values=image.repeat(1, 3, 1, 1)), expected, atol=1e-5)


def test_per_channel_normalisation() -> None:
    values = np.zeros((2, 2, 3))
    values[..., 0] = [[0, 100], [100, 100]]  # red from 0 to 100
    values[..., 2] = [[1000, 2000], [2000, 2000]]  # blue from 1000 to 2000
    joint = Intensity(normalize="image").to_uint8(values)
    assert joint[0, 1, 0] == round(100 * 255 / 2000) and joint[0, 1, 2] == 255
    split = Intensity(normalize="image", per_channel=True).to_uint8(values)
    assert split[0, 1, 0] == 255 and split[0, 0, 0] == 0 and split[0, 0, 2] == 0
    assert (split[..., 1] == 0).all()  # a constant channel becomes black
    stats = Intensity(normalize="dataset", per_channel=True).dataset_range([values, values])
    assert list(stats[0]) == [0, 0, 1000] and list(stats[1]) == [100, 0, 2000]
    with pytest.raises(ConfigError, match="per_channel must be true or false"):
        Intensity.from_options({"per_channel": "yes"})


def _cells(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 8, 3) uint16 'colour' images whose red level is the label (0, 1, 2)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 500, size=(n, 8, 8, 3)).astype(np.uint16)
    images[..., 0] += (labels * 20000).astype(np.uint16)[:, None, None]
    return images, labels


def test_npz_and_hdf5_arrays(tmp_path: Path) -> None:
    images, labels = _cells(12)
    np.savez(tmp_path / "cells.npz", x=images, y=labels)
    source = {"path": str(tmp_path / "cells.npz"), "images_key": "x", "labels_key": "y"}
    ds = _load({**source, "channels": "rgb", "normalize": {"range": [0, 65535]}})
    assert len(ds) == 12 and ds.features["label"].names == ["0", "1", "2"]
    red = [np.asarray(_decoded(r["image"]))[..., 0].mean() for r in ds]
    assert red[0] < 5 and 75 < red[1] < 85 and 155 < red[2] < 165  # 20000 / 65535 * 255 = 78
    assert _decoded(_load(source)[0]["image"]).mode == "L"  # grey by default
    with h5py.File(tmp_path / "cells.h5", "w") as handle:
        handle.create_dataset("train/data", data=images)
        handle.create_dataset("train/target", data=labels)
    h5 = {"path": str(tmp_path / "cells.h5"), "images_key": "train/data"}
    from_h5 = _load({**h5, "labels_key": "train/target", "channels": "rgb"})
    assert from_h5["label"] == labels.tolist()
    bundle = lp.load_data(
        "medical-image",
        {**h5, "labels_key": "train/target", "label_names": ["a", "b", "c"]},
        split={"validation": 0.25, "test": 0, "seed": 0},
    )
    assert bundle.label_names == ["a", "b", "c"]
    assert bundle.summary()["rows"] == {"train": 9, "validation": 3, "test": 0}
    with pytest.raises(DataError, match=r"cells\.h5: no dataset 'train/label' \(labels_key\)"):
        _load({**h5, "labels_key": "train/label"})


def test_arrays_in_memory_and_their_checks(tmp_path: Path) -> None:
    images = np.random.default_rng(1).uniform(0, 1, size=(5, 6, 6))
    images[3, 2, 2] = np.nan
    records = BadRecords("skip")
    ds = MedicalImageDomain().load(
        {"images": images, "labels": [0, 1, 0, 1, 0]}, bad_records=records
    )
    assert len(ds) == 4 and [r.row for r in records] == [3]
    assert "image 3 of 'images' has NaN" in records.records[0].reason
    with pytest.raises(DataError, match=r"row 3: image 3 of 'images' has NaN"):
        _load({"images": images, "labels": [0, 1, 0, 1, 0]})
    with pytest.raises(DataError, match="'images' holds 5 images but 'labels' holds 2"):
        _load({"images": images, "labels": [0, 1]})
    with pytest.raises(DataError, match=r"row 1: label 7 of image 1 .* label_names \['a', 'b'\]"):
        _load({"images": images[:2], "labels": [0, 7], "label_names": ["a", "b"]})
    with pytest.raises(DataError, match=r"'images' has shape \(5, 6\)"):
        _load({"images": np.zeros((5, 6)), "labels": [0] * 5})
    np.save(tmp_path / "x.npy", images[:3])
    np.save(tmp_path / "y.npy", np.array(["ok", "bad", "ok"]))
    pair = _load({"path": str(tmp_path / "x.npy"), "labels_path": str(tmp_path / "y.npy")})
    assert pair.features["label"].names == ["bad", "ok"]
    unlabelled = MedicalImageDomain().load_unlabelled(
        {"path": str(tmp_path / "x.npy")}, bad_records=BadRecords()
    )
    assert unlabelled.column_names == ["image"] and len(unlabelled) == 3


def test_a_datasets_dataset_source(smears: Path) -> None:
    files = sorted(smears.rglob("*.png"))[::8]
    names = [f.parent.name for f in files]
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "stain": datasets.ClassLabel(names=sorted(STAINS)),
            "patient": datasets.Value("string"),
        }
    )
    data = datasets.Dataset.from_dict(
        {
            "img": [str(f) for f in files],
            "stain": [sorted(STAINS).index(n) for n in names],
            "patient": [f"P{i // 2}" for i in range(len(files))],
        },
        features=features,
    )
    source = {"dataset": data, "image_column": "img", "label_column": "stain"}
    ds = _load({**source, "group_column": "patient", "channels": "rgb"})
    assert ds.features["label"].names == sorted(STAINS)
    assert [ds.features["label"].int2str(v) for v in ds["label"]] == names
    assert len(set(ds["group"])) == (len(files) + 1) // 2 and "P0" not in ds["group"]
    first = np.asarray(_decoded(ds[0]["image"]))
    assert np.array_equal(first, np.asarray(Image.open(files[0])))
    arrays = datasets.Dataset.from_dict({"image": [np.zeros((4, 4)), np.ones((4, 4))]})
    target = MedicalImageDomain().load_unlabelled({"dataset": arrays}, bad_records=BadRecords())
    assert len(target) == 2
    # through the data layer, with the dataset's own splits
    bundle = lp.load_data(
        "medical-image",
        {**source, "dataset": datasets.DatasetDict({"train": data, "test": data.select([1, 6])})},
        split={"validation": 0.3, "seed": 0},
    )
    assert len(bundle.test) == 2 and sorted(bundle.test["label"]) == [0, 1]
    with pytest.raises(ConfigError, match="label_column 'stains' not in columns"):
        _load({**source, "label_column": "stains"})


def test_unknown_source_keys_are_refused(smears: Path) -> None:
    with pytest.raises(ConfigError, match=r"'chanels' is unknown; did you mean 'channels'"):
        _load({"path": str(smears), "chanels": "rgb"})
    with pytest.raises(ConfigError, match=r"'windw' is unknown; did you mean 'window'"):
        lp.load_data("medical-image", {"path": str(smears), "windw": "lung"})


def _nifti(path: Path, data: np.ndarray) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_nifti_zero_length_axis_and_size_limits(tmp_path: Path) -> None:
    empty = _nifti(tmp_path / "empty.nii.gz", np.zeros((4, 0, 3), np.float32))
    with pytest.raises(ReadError, match=r"shape \(4, 0, 3\): a zero-length axis"):
        read_nifti(empty)
    records = BadRecords("skip")
    folder = tmp_path / "vols" / "a"
    folder.mkdir(parents=True)
    _nifti(folder / "ok.nii.gz", np.ones((4, 4, 3), np.float32))
    _nifti(folder / "empty.nii.gz", np.zeros((4, 0, 3), np.float32))
    ds = MedicalImageDomain().load({"path": str(tmp_path / "vols")}, bad_records=records)
    assert len(ds) == 1 and "zero-length axis" in records.records[0].reason
    big = _nifti(tmp_path / "big.nii.gz", np.zeros((20, 20, 20), np.uint8))
    assert big.stat().st_size < 1000  # a small file that decompresses to many voxels
    with pytest.raises(ReadError, match=r"8,000 voxels, over max_voxels=1,000"):
        read_nifti(big, limits=Limits(max_voxels=1000))
    with pytest.raises(ReadError, match=r"NIfTI slice along axis 2 is too large"):
        read_nifti(big, limits=Limits(max_pixels=100))
    domain = MedicalImageDomain(max_voxels=1000)
    with pytest.raises(DataError, match=r"big\.nii\.gz.*over max_voxels=1,000"):
        domain.load({"path": str(big), "label": "x"}, bad_records=BadRecords())


def test_a_decompression_bomb_png_is_refused_before_decoding(tmp_path: Path) -> None:
    Image.new("L", (3000, 3000)).save(tmp_path / "bomb.png")  # small file, 9 million pixels
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    domain = MedicalImageDomain(max_pixels=1_000_000)
    with pytest.raises(DataError, match=r"bomb\.png.*9,000,000 pixels, over max_pixels"):
        domain.load({"path": str(tmp_path / "bomb.png"), "label": "x"}, bad_records=BadRecords())
    with pytest.raises(ConfigError, match="max_pixels must be a positive integer"):
        MedicalImageDomain(max_pixels=0)
