"""Test configuration for the whole repository: never touch the network, and one thread per
test process (tiny models on a 2-core machine run many times faster without oversubscribed
threads; set LEPTON_TEST_THREADS to change it)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_threads = os.environ.setdefault("LEPTON_TEST_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)  # subprocesses started by tests


def pytest_configure(config: object) -> None:
    import torch

    torch.set_num_threads(int(_threads))
