"""Bad image files: each stops loading with its path named, or is skipped and listed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from lepton_image.domain import ImageDomain
from lepton_image.testing import truncated, write_huge_png, write_image
from PIL import Image

from lepton_platform.data import BadRecords
from lepton_platform.errors import DataError


def _bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad file, in its own class folder beside a good image: name -> (path, words
    the reason must contain)."""
    made: dict[str, tuple[Path, str]] = {}
    zero = root / "zero" / "empty.png"
    zero.parent.mkdir(parents=True)
    zero.touch()
    made["zero-byte"] = (zero, "0 bytes")
    made["truncated-png"] = (
        truncated(write_image(root / "tpng" / "cut.png", size=(64, 64))),
        "truncated",
    )
    made["truncated-jpeg"] = (
        truncated(write_image(root / "tjpg" / "cut.jpg", size=(64, 64)), keep=0.3),
        "truncated",
    )
    text = root / "text" / "notes.png"
    text.parent.mkdir(parents=True)
    text.write_text("this is not an image\n")
    made["text-as-png"] = (text, "not an image")
    made["bomb"] = (write_huge_png(root / "bomb" / "huge.png"), "20000x20000")
    for name in ("zero", "tpng", "tjpg", "text", "bomb"):
        write_image(root / name / "good.png", seed=1)
    return made


def test_each_bad_file_is_an_error_naming_its_path(tmp_path: Path) -> None:
    made = _bad_files(tmp_path / "all")
    domain = ImageDomain()
    for kind, (path, words) in made.items():
        with pytest.raises(DataError) as info:
            domain.check_file(path)
        message = str(info.value)
        assert str(path) in message, kind
        assert words in message, f"{kind}: {message}"


def test_folder_with_bad_files_stops_at_the_first(tmp_path: Path) -> None:
    made = _bad_files(tmp_path / "all")
    with pytest.raises(DataError) as info:
        ImageDomain().load({"path": str(tmp_path / "all")}, bad_records=BadRecords("error"))
    assert any(str(path) in str(info.value) for path, _ in made.values())
    assert "on_bad_record" in str(info.value)


def test_folder_with_bad_files_skips_and_lists_them(tmp_path: Path) -> None:
    made = _bad_files(tmp_path / "all")
    (tmp_path / "all" / "emptyclass").mkdir()
    bad = BadRecords("skip")
    ds = ImageDomain().load({"path": str(tmp_path / "all")}, bad_records=bad)
    listed = {r.file: r.reason for r in bad}
    for kind, (path, words) in made.items():
        assert str(path) in listed, f"{kind} not listed: {sorted(listed)}"
        assert words in listed[str(path)], f"{kind}: {listed[str(path)]}"
    assert str(tmp_path / "all" / "emptyclass") in listed
    assert len(bad) == len(made) + 1
    assert len(ds) == 5  # the five good images
    assert ds.features["label"].names == ["bomb", "text", "tjpg", "tpng", "zero"]


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "pets" / "cat" / "a.png")
    (tmp_path / "pets" / "dog").mkdir()
    with pytest.raises(DataError, match=r"pets/dog: class folder has no readable images"):
        ImageDomain().load({"path": str(tmp_path / "pets")}, bad_records=BadRecords())


def test_missing_path_in_csv_names_file_row_and_path(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerow(["a.png", "cat"])
        writer.writerow(["missing/b.png", "dog"])
    with pytest.raises(DataError) as info:
        ImageDomain().load({"path": str(listing)}, bad_records=BadRecords())
    message = str(info.value)
    assert str(listing) in message and "row 3" in message
    assert str(tmp_path / "missing" / "b.png") in message and "does not exist" in message
    bad = BadRecords("skip")
    ds = ImageDomain().load({"path": str(listing), "label_names": ["cat", "dog"]}, bad_records=bad)
    assert len(ds) == 1 and len(bad) == 1
    assert next(iter(bad)).row == 3


def test_cmyk_jpeg_is_valid_and_converted(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    write_image(tmp_path / "pets" / "cat" / "a.png")
    cmyk.save(tmp_path / "pets" / "cat" / "cmyk.jpg")
    ds = ImageDomain().load({"path": str(tmp_path / "pets")}, bad_records=BadRecords())
    from lepton_image.preprocessing import ImagePreprocessor

    prep = ImagePreprocessor(image_size=8)
    out = prep.transform({"image": [str(tmp_path / "pets" / "cat" / "cmyk.jpg")]})
    pixels = np.frombuffer(out["pixel_values"][0], dtype=np.uint8).reshape(8, 8, 3)
    assert len(ds) == 2
    assert pixels[..., 0].mean() > 200 and pixels[..., 1].mean() < 60 and pixels[..., 2].mean() < 60


def test_max_pixels_can_be_raised_or_lowered(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", size=(40, 30))
    with pytest.raises(DataError, match="40x30 = 1,200 pixels"):
        ImageDomain(max_pixels=1000).check_file(path)
    ImageDomain(max_pixels=1200).check_file(path)


def test_header_only_verification_misses_truncation_but_transform_names_it(tmp_path: Path) -> None:
    from lepton_image.preprocessing import ImagePreprocessor

    path = truncated(write_image(tmp_path / "pets" / "cat" / "cut.png", size=(64, 64)))
    write_image(tmp_path / "pets" / "dog" / "ok.png")
    ds = ImageDomain(verify="header").load(
        {"path": str(tmp_path / "pets")}, bad_records=BadRecords()
    )
    assert len(ds) == 2
    with pytest.raises(DataError, match=str(path)):
        ImagePreprocessor(image_size=8).transform({"image": [str(path)]})
