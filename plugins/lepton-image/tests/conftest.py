"""Shared fixtures of the image plugin's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from lepton_image.testing import write_image


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/cat (3 PNG), root/dog (2 JPEG)."""
    root = tmp_path / "pets"
    for i in range(3):
        write_image(root / "cat" / f"c{i}.png", seed=i)
    for i in range(2):
        write_image(root / "dog" / f"d{i}.jpg", seed=10 + i)
    return root
