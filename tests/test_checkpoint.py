"""Checkpoints: atomic, checksummed, never unpickled; exact resume; refusals that name the
problem. (The real SIGKILL test is in test_finetune_subprocess.py.)"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from lepton_platform.engine import checkpoint as ckpt
from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer
from lepton_platform.errors import ArtifactError, ConfigError
from tests._engine_helpers import FeaturePreprocessor, make_dataset, make_model, make_task, weights


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**changes: Any) -> TrainConfig:
    options: dict[str, Any] = {
        "epochs": 3,
        "batch_size": 8,
        "lr": 0.02,
        "seed": 11,
        "scheduler": "cosine",
        "warmup_steps": 2,
        "checkpoint_every_steps": 2,
        "keep_checkpoints": 3,
        "progress": False,
        "log_every_steps": 1,
    }
    return TrainConfig(**{**options, **changes})


class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, step: int, logs: Any) -> None:
        if step == self.step:
            raise Crash(f"crash after step {step}")


def run(out: Path | None, cfg: TrainConfig, *, resume: bool = False, **kw: Any) -> Any:
    model = make_model(seed=1, dropout=0.2)  # dropout: the RNG state matters
    trainer = Trainer(model, make_task(), cfg, output_dir=out, **kw)
    result = trainer.fit(
        make_dataset(40), make_dataset(16, seed=5), FeaturePreprocessor(0.2), resume=resume
    )
    return trainer, result


def test_resume_after_a_crash_is_exact(tmp_path: Path) -> None:
    reference, ref_result = run(tmp_path / "ref", config())
    with pytest.raises(Crash):
        run(tmp_path / "run", config(), callbacks=[CrashAt(9)])  # mid-epoch 1 (5 steps/epoch)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == ["step-00000005-end", "step-00000006", "step-00000008"]
    resumed, result = run(tmp_path / "run", config(progress=True), resume=True)
    assert result.resumed_from is not None and result.resumed_from.name == "step-00000008"
    assert result.history == ref_result.history
    for key, value in weights(reference.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    ref_log = (tmp_path / "ref" / "metrics.jsonl").read_text()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ref_log


def test_checkpoint_files_are_safetensors_and_json(tmp_path: Path) -> None:
    run(tmp_path, config(epochs=1))
    last = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    assert last is not None and last.name == "step-00000005-end"
    suffixes = {p.suffix for p in last.iterdir()}
    assert suffixes == {".json", ".safetensors"}
    manifest = ckpt.verify_checkpoint(last)
    assert set(manifest["files"]) == {
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "trainer.json",
        "rng-0.json",
        "rng-0.safetensors",
    }
    state = json.loads((last / "trainer.json").read_text())["state"]
    assert (state["epoch"], state["batch"], state["global_step"]) == (1, 0, 5)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_keep_checkpoints_prunes_the_oldest(tmp_path: Path) -> None:
    run(tmp_path, config(keep_checkpoints=2))
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-00000014", "step-00000015-end"]
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize("damage", ["truncate", "tamper", "delete"])
def test_damaged_checkpoint_is_refused(tmp_path: Path, damage: str) -> None:
    with pytest.raises(Crash):
        run(tmp_path, config(), callbacks=[CrashAt(4)])
    last = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    assert last is not None
    target = last / "optimizer.safetensors"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
        expected = "truncated or altered"
    elif damage == "tamper":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        expected = "does not match its sha256"
    else:
        target.unlink()
        expected = "is missing"
    with pytest.raises(ArtifactError, match=expected) as err:
        run(tmp_path, config(), resume=True)
    assert "optimizer.safetensors" in str(err.value)


def test_resume_with_another_config_names_what_differs(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        run(tmp_path, config(), callbacks=[CrashAt(3)])
    with pytest.raises(ConfigError, match=r"config lr was 0.02 in the checkpoint, now 0.05"):
        run(tmp_path, config(lr=0.05), resume=True)
    model = make_model(seed=1, hidden=8)
    trainer = Trainer(model, make_task(), config(), output_dir=tmp_path)
    with pytest.raises(ConfigError, match="the model architecture differs"):
        trainer.fit(make_dataset(40), None, FeaturePreprocessor(0.2), resume=True)
    # what does not change the result may change: progress, logging, checkpoint cadence
    _, result = run(tmp_path, config(checkpoint_every_steps=5, progress=True), resume=True)
    assert result.resumed_from is not None and len(result.history) == 3


def test_atomic_writer_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "step-00000001"
    with pytest.raises(RuntimeError), ckpt.CheckpointWriter(final) as writer:
        writer.write_json("a.json", {"x": 1})
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with ckpt.CheckpointWriter(final) as writer:
        writer.write_json("a.json", {"x": 1})
        writer.commit()
    assert ckpt.verify_checkpoint(final)["files"]["a.json"]["bytes"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


def test_optimizer_and_rng_round_trip(tmp_path: Path) -> None:
    from lepton_platform.engine._loop_utils import capture_rng, restore_rng

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = capture_rng(include_cuda=False)
    expected = torch.rand(3)
    with ckpt.CheckpointWriter(tmp_path / "c") as writer:
        tensors, rest = ckpt.optimizer_tensors(opt.state_dict())
        writer.write_tensors("o.safetensors", tensors, {})
        writer.write_json("o.json", rest)
        rng_json, rng_tensors = ckpt.rng_to_files(state)
        writer.write_json("r.json", rng_json)
        writer.write_tensors("r.safetensors", rng_tensors, {})
        writer.commit()
    loaded = ckpt.load_optimizer_state(tmp_path / "c/o.safetensors", tmp_path / "c/o.json")
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(loaded["state"][0][key], value)
    restore_rng(ckpt.load_rng(tmp_path / "c/r.json", tmp_path / "c/r.safetensors"))
    assert torch.equal(torch.rand(3), expected)


def test_a_wait_interrupted_by_a_signal_still_waits_for_the_write_afterwards() -> None:
    """Ctrl-C or SIGTERM during the wait for a background write: the wait after it (the one
    the end of fit does) blocks until the write is done. (Thread.join marks the thread
    finished when interrupted on Python 3.11, so a join-based wait returned at once.)"""
    release = threading.Event()
    finished: list[bool] = []

    def write() -> None:
        release.wait(5)
        finished.append(True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    writes = ckpt.BackgroundWrites()
    writes.submit(write)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            writes.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert writes.pending and not finished
    threading.Timer(0.3, release.set).start()
    writes.wait()
    assert finished == [True] and not writes.pending
