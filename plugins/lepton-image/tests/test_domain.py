"""The image domain's sources, decoding rules and prediction inputs, on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
from lepton_image.decode import open_image, to_mode
from lepton_image.domain import ImageDomain
from lepton_image.preprocessing import ImagePreprocessor
from lepton_image.testing import png_bytes, write_image
from PIL import Image

from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError


def _load(source: dict[str, object], policy: str = "error") -> datasets.Dataset:
    ds = ImageDomain().load(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def _pixels(source: object, size: int = 4, channels: int = 3) -> np.ndarray:
    prep = ImagePreprocessor(
        image_size=size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels
    )
    raw = prep.transform({"image": [source]})["pixel_values"][0]
    return np.frombuffer(raw, dtype=np.uint8).reshape(size, size, channels)


def test_class_folder(class_folder: Path) -> None:
    ds = _load({"path": str(class_folder)})
    assert ds.column_names == ["image", "label"]
    assert ds.features["label"].names == ["cat", "dog"]
    assert ds["label"] == [0, 0, 0, 1, 1]
    first = ds[0]["image"]
    assert first["path"] == str(class_folder / "cat" / "c0.png") and first["bytes"] is None


def test_csv_and_json_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png")
    write_image(tmp_path / "img" / "b.jpg", seed=2)
    (tmp_path / "list.csv").write_text("file,class,patient\nimg/a.png,dog,p1\nimg/b.jpg,cat,p2\n")
    ds = _load({"path": str(tmp_path / "list.csv"), "group_column": "patient"})
    assert ds.features["label"].names == ["cat", "dog"]
    assert ds["label"] == [1, 0] and ds["group"] == ["p1", "p2"]
    rows = [{"image": "img/a.png", "label": "dog"}, {"image": "img/b.jpg", "label": "cat"}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("list.json", "list.jsonl"):
        other = _load({"path": str(tmp_path / name), "label_names": ["dog", "cat"]})
        assert other["label"] == [0, 1]
        assert other[0]["image"]["path"] == str(tmp_path / "img" / "a.png")


def test_multi_label_csv(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "tags.csv").write_text("path,labels\n0.png,cat;indoor\n1.png,dog\n2.png,\n")
    ds = _load({"path": str(tmp_path / "tags.csv"), "multi_label": True})
    assert isinstance(ds.features["label"], datasets.List)
    assert ds.features["label"].feature.names == ["cat", "dog", "indoor"]
    assert ds["label"] == [[0, 2], [1], []]


def test_saved_hf_dataset_and_object(tmp_path: Path) -> None:
    images = [Image.new("RGB", (6, 6), (i * 40, 0, 0)) for i in range(4)]
    features = datasets.Features(
        {"img": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b"])}
    )
    hf = datasets.Dataset.from_dict({"img": images, "y": [0, 1, 0, 1]}, features=features)
    splits = datasets.DatasetDict({"train": hf.select([0, 1, 2]), "test": hf.select([3])})
    splits.save_to_disk(str(tmp_path / "saved"))
    source = {"path": str(tmp_path / "saved"), "image_column": "img", "label_column": "y"}
    loaded = ImageDomain().load(source, bad_records=BadRecords())
    assert isinstance(loaded, datasets.DatasetDict)
    assert loaded["train"]["label"] == [0, 1, 0] and len(loaded["test"]) == 1
    assert loaded["test"].features["label"].names == ["a", "b"]
    direct = _load({"dataset": hf, "image_column": "img", "label_column": "y"})
    assert direct["label"] == [0, 1, 0, 1]
    assert _pixels(direct[2]["image"])[..., 0].mean() == pytest.approx(80, abs=1)


def test_numpy_arrays_and_npz(tmp_path: Path) -> None:
    gray = np.stack([np.full((5, 7), v, dtype=np.uint8) for v in (0, 100, 200)])
    ds = _load({"images": gray, "labels": np.array([0, 1, 1])})
    assert ds.features["label"].names == ["0", "1"]
    assert _pixels(ds[1]["image"])[..., 1].mean() == 100
    colour = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=colour, labels=np.array(["x", "y"]))
    npz = _load({"path": str(tmp_path / "set.npz")})
    assert npz.features["label"].names == ["x", "y"]
    assert np.array_equal(_pixels(npz[0]["image"]), colour[0])  # stored losslessly
    floats = np.full((2, 4, 4), 8.0)
    scaled = _load({"images": floats, "labels": [0, 1], "value_range": [0, 16]})
    assert _pixels(scaled[0]["image"]).mean() == 128
    with pytest.raises(DataError, match=r"shape \(2, 4\)"):
        _load({"images": np.zeros((2, 4)), "labels": [0, 1]})
    with pytest.raises(DataError, match="'images' holds 2 images but 'labels' holds 3 labels"):
        _load({"images": floats, "labels": [0, 1, 1]})


def test_modes_become_rgb(tmp_path: Path) -> None:
    grey = Image.new("L", (4, 4), 90)
    assert _pixels(png_bytes(grey)).tolist() == np.full((4, 4, 3), 90).tolist()
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert _pixels(png_bytes(palette))[0, 0].tolist() == [10, 20, 30]
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent: white
    assert _pixels(png_bytes(transparent))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("RGBA", (4, 4), (0, 0, 200, 128))
    assert _pixels(png_bytes(half))[0, 0].tolist() == pytest.approx([127, 127, 227], abs=2)
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    (tmp_path / "deep.png").write_bytes(png_bytes(deep))
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert _pixels(str(tmp_path / "deep.png")).min() == 255
    mid = Image.fromarray(np.full((4, 4), 257 * 40, dtype=np.uint16))
    assert _pixels(png_bytes(mid)).max() == 40
    assert _pixels(png_bytes(Image.new("RGB", (4, 4), (9, 8, 7))), channels=1).max() == 8
    assert to_mode(Image.new("1", (2, 2), 1)).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)  # 4 wide, 2 high; red at the top-left
    pixels[0, 0] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    image.save(tmp_path / "rot.png", exif=exif.tobytes())
    opened = open_image(str(tmp_path / "rot.png"))
    assert opened.size == (2, 4)
    assert opened.getpixel((1, 0)) == (255, 0, 0)  # top-left moved to the top-right


def test_from_inputs_paths_images_arrays(class_folder: Path) -> None:
    domain = ImageDomain()
    inputs = [
        str(class_folder / "cat" / "c0.png"),
        Image.new("RGB", (3, 3)),
        np.zeros((3, 3), dtype=np.uint8),
        {"bytes": png_bytes(Image.new("L", (2, 2))), "path": None},
    ]
    ds = domain.from_inputs(inputs)
    assert ds.column_names == ["image"] and len(ds) == 4
    assert len(domain.from_inputs(str(class_folder / "dog" / "d0.jpg"))) == 1
    with pytest.raises(DataError, match=r"input 0 .*nowhere.png.*does not exist"):
        domain.from_inputs([str(class_folder / "nowhere.png")])
    with pytest.raises(DataError, match=r"input 1: the image domain reads .* not float"):
        domain.from_inputs([str(class_folder / "cat" / "c1.png"), 3.5])


def test_example_dataset_is_deterministic_and_learnable() -> None:
    domain = ImageDomain()
    a = domain.example_dataset(9, ["r", "g", "b"], seed=3)
    b = domain.example_dataset(9, ["r", "g", "b"], seed=3)
    assert a.data.table.equals(b.data.table)
    assert a["label"] == [0, 1, 2] * 3
    means = [_pixels(a[i]["image"]).reshape(-1, 3).mean(0) for i in range(9)]
    assert np.abs(means[0] - means[3]).max() < 25  # same class, same colour
    assert max(np.abs(means[0] - means[i]).max() for i in (1, 2)) > 25


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs 'path'"):
        _load({})
    with pytest.raises(DataError, match="does not exist"):
        _load({"path": str(tmp_path / "none")})
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        _load({"path": str(tmp_path / "x.txt")})
    (tmp_path / "l.csv").write_text("what,label\na.png,x\n")
    with pytest.raises(DataError, match="no image column"):
        _load({"path": str(tmp_path / "l.csv")})
    with pytest.raises(ConfigError, match="max_pixels"):
        ImageDomain(max_pixels=0)


def test_fingerprint_follows_file_changes(class_folder: Path) -> None:
    first = _load({"path": str(class_folder)})
    same = _load({"path": str(class_folder)})
    assert first._fingerprint == same._fingerprint
    target = class_folder / "cat" / "c0.png"
    write_image(target, seed=99, size=(13, 10))
    os.utime(target, ns=(1, 10**18))
    assert _load({"path": str(class_folder)})._fingerprint != first._fingerprint
