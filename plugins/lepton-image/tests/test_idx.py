"""IDX sources (the MNIST format), written in the tests; the real MNIST when present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from lepton_image.idx import read_idx

import lepton_platform as lp
from lepton_platform.data import BadRecords
from lepton_platform.errors import DataError

MNIST = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mnist_test"


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def test_read_idx_round_trips(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", images)), images)
    ints = np.array([1, -2, 300], dtype=np.int32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b.idx", ints, gz=False)), ints)


def test_truncated_or_foreign_idx_names_the_file(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 2, 2), np.uint8), gz=False)
    truncated = tmp_path / "t-idx3-ubyte"
    truncated.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"t-idx3-ubyte.*truncated"):
        read_idx(truncated)
    text = tmp_path / "n-idx1-ubyte"
    text.write_text("hello")
    with pytest.raises(DataError, match="n-idx1-ubyte: not an IDX file"):
        read_idx(text)


def test_idx_source_loads_into_the_standard_schema(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = write_idx(tmp_path / "img-idx3-ubyte.gz", rng.integers(0, 255, (6, 5, 5), np.uint8))
    labels = write_idx(tmp_path / "lab-idx1-ubyte.gz", np.array([0, 1, 2, 0, 1, 2], np.uint8))
    domain = lp.create_domain("image")
    ds = domain.load(
        {"path": str(images), "labels_path": str(labels), "limit": 5}, bad_records=BadRecords()
    )
    assert len(ds) == 5
    assert ds.features["label"].names == ["0", "1", "2"]


@pytest.mark.integration
def test_real_mnist_idx_reads(tmp_path: Path) -> None:
    if not MNIST.is_dir():
        pytest.skip(f"{MNIST} is absent (the shared data sets are not there)")
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).min() > 850
