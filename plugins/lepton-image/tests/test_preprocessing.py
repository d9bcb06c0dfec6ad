"""Image preprocessing: the cached transform, augmentation, collate and the data layer's cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_image.domain import ImageDomain
from lepton_image.preprocessing import Augmentation, ImagePreprocessor
from lepton_image.testing import png_bytes
from PIL import Image

from lepton_platform.errors import ConfigError


def _stripes(width: int, height: int) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 0] = (np.arange(width) * 255 // (width - 1))[None, :]
    return Image.fromarray(pixels)


def test_transform_resizes_the_short_side_and_crops_the_centre() -> None:
    prep = ImagePreprocessor(image_size=8, resize_size=10)
    out = prep.transform({"image": [png_bytes(_stripes(40, 20))]})
    raw = out["pixel_values"][0]
    assert isinstance(raw, bytes) and len(raw) == 8 * 8 * 3  # uint8 HWC
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(8, 8, 3)
    # 40x20 -> 20x10 -> centre 8 columns out of 20: red from about 35% to 65%
    assert 70 < pixels[0, 0, 0] < 110 and 145 < pixels[0, -1, 0] < 185


def test_collate_normalises_in_channels_last() -> None:
    prep = ImagePreprocessor(
        image_size=2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), channels_last=True
    )
    value = np.full((2, 2, 3), 255, dtype=np.uint8).tobytes()
    batch = prep.collate([{"pixel_values": value}, {"pixel_values": value}])["pixel_values"]
    assert batch.shape == (2, 3, 2, 2) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert batch[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])
    plain = ImagePreprocessor(image_size=2, channels_last=False).collate([{"pixel_values": value}])
    assert plain["pixel_values"].is_contiguous()


def test_augment_crops_and_flips_reproducibly() -> None:
    prep = ImagePreprocessor(image_size=8, augmentation={"scale": [0.3, 0.6], "hflip": 0.5})
    example = prep.transform({"image": [png_bytes(_stripes(8, 8))]})
    row = {"pixel_values": example["pixel_values"][0], "label": 1}
    torch.manual_seed(5)
    first = prep.augment(row)
    torch.manual_seed(5)
    again = prep.augment(row)
    assert first["label"] == 1 and first["pixel_values"].shape == (8, 8, 3)
    assert np.array_equal(first["pixel_values"], again["pixel_values"])
    outs = {prep.augment(row)["pixel_values"].tobytes() for _ in range(6)}
    assert len(outs) > 1
    mirror = ImagePreprocessor(
        image_size=8, augmentation={"scale": [1, 1], "ratio": [1, 1], "hflip": 1.0}
    )
    flipped = mirror.augment(row)["pixel_values"]
    original = np.frombuffer(row["pixel_values"], dtype=np.uint8).reshape(8, 8, 3)
    assert np.array_equal(flipped, original[:, ::-1])
    off = ImagePreprocessor(image_size=8, augmentation=False)
    assert off.augment(row) is row
    batch = prep.collate([first, row])  # augmented arrays and cached bytes mix
    assert batch["pixel_values"].shape == (2, 3, 8, 8)


def test_fingerprint_keys_only_what_transform_does() -> None:
    base = ImagePreprocessor(image_size=16)
    assert (
        base.fingerprint()
        == ImagePreprocessor(
            image_size=16, mean=(0, 0, 0), augmentation=False, channels_last=False
        ).fingerprint()
    )
    assert base.fingerprint() != ImagePreprocessor(image_size=16, resize_size=18).fingerprint()
    assert (
        base.fingerprint()
        != ImagePreprocessor(image_size=16, channels=1, mean=(0.5,), std=(0.5,)).fingerprint()
    )
    assert base.config()["augmentation"]["scale"] == [0.35, 1.0]


def test_bad_options_are_named() -> None:
    with pytest.raises(ConfigError, match="no option"):
        Augmentation.from_options({"flip": 0.5})
    with pytest.raises(ConfigError, match="scale"):
        Augmentation.from_options({"scale": [0.5, 2]})
    with pytest.raises(ConfigError, match="resize_size"):
        ImagePreprocessor(image_size=16, resize_size=8)
    with pytest.raises(ConfigError, match="channels"):
        ImagePreprocessor(channels=2)


def test_data_layer_prepare_caches_the_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lepton_platform.data import prepare

    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    ds = ImageDomain().example_dataset(10, ["a", "b"], seed=0)
    prep = ImagePreprocessor(image_size=12, resize_size=14)
    first = prep_ds = prepare(ds, prep)
    assert sorted(prep_ds.column_names) == ["label", "pixel_values"]
    files = list((tmp_path / "cache").rglob("*.arrow"))
    assert len(files) == 1
    again = prepare(ds, ImagePreprocessor(image_size=12, resize_size=14, augmentation=False))
    assert again.cache_files == first.cache_files  # other augmentation: same cached pixels
    assert len(list((tmp_path / "cache").rglob("*.arrow"))) == 1
    batch = prep.collate([prep.augment(first[i]) for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 12, 12)


def test_one_channel_batches_have_canonical_strides_and_train() -> None:
    """The NHWC view of a one-channel batch counts as contiguous without being laid out as
    NCHW; such strides crashed oneDNN's convolution backward on CPU (batch sizes 25, 41)."""
    import lepton_platform as lp

    pre = ImagePreprocessor(image_size=16, channels=1, mean=(0.5,), std=(0.5,))
    for n in (25, 41):
        examples = [{"pixel_values": np.full((16, 16, 1), i, np.uint8)} for i in range(n)]
        batch = pre.collate(examples)["pixel_values"]
        assert batch.shape == (n, 1, 16, 16)
        assert batch.stride() == (256, 256, 16, 1)
    backbone = lp.create_backbone(
        "resnet18", pretrained=None, small_input=True, in_channels=1, image_size=16, width=8
    ).train()
    for n in (25, 41):
        x = pre.collate([{"pixel_values": np.random.randint(0, 255, (16, 16, 1), np.uint8)}
                         for _ in range(n)])["pixel_values"]  # fmt: skip
        backbone(pixel_values=x).sum().backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)
