"""Unlabelled target images (domain adaptation): folders without class structure, single files,
labelled sources with their labels dropped, bad files, and CORAL adapting to such a folder."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from lepton_image.domain import ImageDomain
from lepton_image.testing import truncated, write_huge_png, write_image
from PIL import Image

import lepton_platform as lp
from lepton_platform.data import BadRecords, load_unlabelled
from lepton_platform.errors import ConfigError, DataError


def _unlabelled(source: dict[str, object], policy: str = "error") -> datasets.Dataset:
    ds = ImageDomain().load_unlabelled(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_a_folder_of_images_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "target"
    for i in range(3):
        write_image(root / f"{i}.png", seed=i)
    flat = _unlabelled({"path": str(root)})
    assert flat.column_names == ["image"] and len(flat) == 3
    with pytest.raises(DataError, match="no class subfolders"):  # load still needs classes
        ImageDomain().load({"path": str(root)}, bad_records=BadRecords())
    write_image(root / "day2" / "a.jpg", seed=5)
    write_image(root / "day2" / "deeper" / "b.bmp", seed=6)
    ds = _unlabelled({"path": str(root)})
    assert ds.column_names == ["image"]
    assert len(ds) == 5
    paths = [row["path"] for row in ds["image"]]
    assert paths == sorted(paths) and str(root / "day2" / "deeper" / "b.bmp") in paths


def test_labelled_sources_read_without_labels(class_folder: Path, tmp_path: Path) -> None:
    ds = _unlabelled({"path": str(class_folder)})  # class subfolders are just folders
    assert ds.column_names == ["image"] and len(ds) == 5
    (tmp_path / "list.csv").write_text(f"path,label\n{class_folder}/cat/c0.png,cat\n")
    assert _unlabelled({"path": str(tmp_path / "list.csv")}).column_names == ["image"]
    (tmp_path / "paths.csv").write_text(
        f"path\n{class_folder}/cat/c0.png\n{class_folder}/dog/d1.jpg\n"
    )
    assert len(_unlabelled({"path": str(tmp_path / "paths.csv")})) == 2
    with pytest.raises(DataError, match="no label column"):
        ImageDomain().load({"path": str(tmp_path / "paths.csv")}, bad_records=BadRecords())
    (tmp_path / "paths.jsonl").write_text(json.dumps({"image": f"{class_folder}/cat/c1.png"}))
    assert len(_unlabelled({"path": str(tmp_path / "paths.jsonl")})) == 1
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 5, 5), dtype=np.uint8))
    assert len(_unlabelled({"path": str(tmp_path / "x.npz")})) == 4
    assert len(_unlabelled({"images": np.zeros((3, 4, 4, 3), dtype=np.uint8)})) == 3
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["a"])})
    hf = datasets.Dataset.from_dict(
        {"img": [Image.new("RGB", (4, 4))] * 2, "y": [0, 0]}, features=features
    )
    splits = _unlabelled_any({"dataset": datasets.DatasetDict({"train": hf, "test": hf})})
    assert isinstance(splits, datasets.DatasetDict)
    assert all(part.column_names == ["image"] for part in splits.values())


def _unlabelled_any(source: dict[str, object]) -> datasets.Dataset | datasets.DatasetDict:
    return ImageDomain().load_unlabelled(source, bad_records=BadRecords())


def test_a_file_and_a_list_of_files(class_folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = [str(class_folder / "cat" / "c0.png"), str(class_folder / "dog" / "d0.jpg")]
    one = _unlabelled({"path": files[0]})
    assert one.column_names == ["image"] and one[0]["image"]["path"] == files[0]
    capfd.readouterr()
    assert len(load_unlabelled(ImageDomain(), files)) == 2
    assert "Casting" not in capfd.readouterr().err  # parts of one schema are not cast
    with pytest.raises(ConfigError, match="one image file has no label"):
        ImageDomain().load({"path": files[0]}, bad_records=BadRecords())


def test_bad_files_are_named_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "target"
    write_image(root / "good.png")
    write_image(root / "nested" / "good2.png", seed=1)
    cut = truncated(write_image(root / "cut.png", size=(64, 64)))
    bomb = write_huge_png(root / "nested" / "huge.png")
    (root / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=str(cut)) as info:
        _unlabelled({"path": str(root)})
    assert "on_bad_record" in str(info.value)
    bad = BadRecords("skip")
    ds = ImageDomain().load_unlabelled({"path": str(root)}, bad_records=bad)
    listed = {r.file: r.reason for r in bad}
    assert set(listed) == {str(cut), str(bomb), str(root / "notes.txt")}
    assert "truncated" in listed[str(cut)] and "max_pixels" in listed[str(bomb)]
    assert len(ds) == 2
    assert len(load_unlabelled(ImageDomain(), str(root), on_bad_record="skip")) == 2


def test_empty_sources_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden").write_text("x")
    with pytest.raises(DataError, match=f"{empty}: the folder holds no image files"):
        _unlabelled({"path": str(empty)})
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=f"{only_bad}: no readable images"):
        _unlabelled({"path": str(only_bad)}, policy="skip")


def test_coral_adapts_to_an_unlabelled_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for label, level in (("dark", 60), ("light", 190)):
        for i in range(10):
            pixels = np.clip(rng.normal(level, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(_made(tmp_path / "source" / label / f"{i}.png"))
    for i in range(7):  # the target: shifted brightness, no labels, some in a subfolder
        pixels = np.clip(rng.normal(100 + 15 * i, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(_made(tmp_path / "target" / f"{i % 2}" / f"t{i}.png"))
    torch.manual_seed(0)
    result = lp.transfer(
        domain="image",
        data={"path": str(tmp_path / "source")},
        split={"validation": 0.2, "test": 0.2},
        backbone="resnet18",
        backbone_options={**lp.get_backbone("resnet18").tiny_options, "augmentation": False},
        strategy="coral",
        train={"epochs": 1, "batch_size": 8, "progress": False, "trackers": ()},
        unlabelled_target=str(tmp_path / "target"),
        bootstrap=0,
    )
    assert result.details["target_examples"] == 7
    assert result.strategy["name"] == "coral"


def _made(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
