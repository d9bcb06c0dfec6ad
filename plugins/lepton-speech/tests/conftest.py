"""Shared fixtures of the speech plugin's tests: real audio files written with soundfile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lepton_speech.testing import write_tone

# Few cores are shared between many test processes: one thread each is faster overall.
torch.set_num_threads(1)


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/yes (two WAV, one FLAC), root/no (two OGG, one WAV at 8 kHz)."""
    root = tmp_path / "commands"
    write_tone(root / "yes" / "a.wav", freq=300)
    write_tone(root / "yes" / "b.wav", freq=320)
    write_tone(root / "yes" / "c.flac", freq=340)
    write_tone(root / "no" / "a.ogg", freq=900)
    write_tone(root / "no" / "b.ogg", freq=950)
    write_tone(root / "no" / "c.wav", freq=1000, rate=8000)
    return root
