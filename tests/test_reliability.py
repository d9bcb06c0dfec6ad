"""The reliability probes (issue 20), one test per family, in process and fast: no code runs
from a weights file, transfer is loud, readers cannot mis-read, plugin names are never
settled by load order, run folders survive stale locks, kills and full or read-only disks,
caches are never trusted blindly, a resume under other threads is announced, and a saved
model's manifest is protected. The CLI probes with real processes (two ``lepton run`` of one
name, SIGTERM, ``lepton predict`` on an edited model) are in ``test_reliability_cli.py``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lepton_platform as lp
from lepton_platform._host import PluginHost
from lepton_platform._io import WriteError, atomic_write_bytes, recover_folders
from lepton_platform.api.job import build_backbone
from lepton_platform.api.runs import STOPPED, RunFolder, list_runs, read_status
from lepton_platform.data import BadRecords
from lepton_platform.engine import checkpoint as ckpt
from lepton_platform.errors import ArtifactError, ConfigError, DataError, LeptonError, PluginError
from lepton_platform.testing.distributions import FakeSite
from lepton_platform.testing.tiny import save_backbone

SNAPSHOT = {"domain": "tabular", "train": {"epochs": 1}}


# -- 1. code execution: a pickle payload in any weights path never runs -------------------------


def _payload(marker: Path) -> bytes:
    """What ``torch.save`` writes for a state dict holding an object that creates ``marker``
    when it is unpickled (the attacker's file)."""

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    torch.save({"conv1.weight": Payload()}, buffer)
    return buffer.getvalue()


def _plant_torch_hub(tmp: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    from torchvision.models import ResNet18_Weights

    checkpoints = tmp / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]).write_bytes(payload)
    monkeypatch.setenv("TORCH_HOME", str(tmp / "torch"))
    return lambda: lp.create_backbone("resnet18", pretrained="IMAGENET1K_V1")


def _plant_pt_file(tmp: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp / "resnet.pt").write_bytes(payload)
    return lambda: lp.create_backbone("resnet18", pretrained=str(tmp / "resnet.pt"))


def _plant_transformers_text(tmp: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    from transformers import BertConfig

    folder = tmp / "bert"
    BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16,
    ).save_pretrained(folder)  # fmt: skip
    (folder / "pytorch_model.bin").write_bytes(payload)
    return lambda: lp.create_backbone("bert-base-uncased", pretrained=str(folder))


def _plant_transformers_speech(tmp: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    from transformers import Wav2Vec2Config

    folder = tmp / "wav2vec2"
    Wav2Vec2Config(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        conv_dim=[8, 8], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    ).save_pretrained(folder)  # fmt: skip
    (folder / "pytorch_model.bin").write_bytes(payload)
    return lambda: lp.create_backbone("wav2vec2-base", pretrained=str(folder))


def _plant_hugging_face_cache(tmp: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Where a Hub download of ``acme/tiny-bert`` would be kept (read offline)."""
    import huggingface_hub.constants as constants

    revision = "0" * 40
    repo = tmp / "hf" / "models--acme--tiny-bert"
    _plant_transformers_text(repo / "snapshots", payload, monkeypatch)
    (repo / "snapshots" / "bert").rename(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp / "hf"))
    return lambda: lp.create_backbone("bert-base-uncased", pretrained="acme/tiny-bert")


@pytest.mark.parametrize(
    "plant",
    [
        _plant_torch_hub,
        _plant_pt_file,
        _plant_transformers_text,
        _plant_transformers_speech,
        _plant_hugging_face_cache,
    ],
    ids=["torch-hub-cache", "local-pt", "text-bin", "speech-bin", "hugging-face-cache"],
)
def test_a_pickle_payload_in_a_weights_path_never_runs(
    plant: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "payload-ran"
    build = plant(tmp_path, _payload(marker), monkeypatch)
    with pytest.raises(LeptonError) as refused:
        build()
    assert not marker.exists()
    text = str(refused.value)
    assert "weights_only=True" in text or "SHA-256" in text, text
    assert "weights_only=False" not in text  # never the advice to unpickle


# -- 2. loud transfer ----------------------------------------------------------------------------


def test_weights_of_which_nothing_fits_are_an_error_unless_partial_loading_is_asked(
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    stray = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, str(stray))
    with pytest.raises(ConfigError) as refused:
        build_backbone("resnet18", str(stray), {"width": 8})
    text = str(refused.value)
    assert str(stray) in text and "filled only 0%" in text and "backbone.min_loaded" in text
    built, _ = build_backbone("resnet18", str(stray), {"width": 8}, min_loaded=0.0)
    assert built.load_report is not None and built.load_report.share == 0.0


def test_a_lepton_model_folder_with_altered_weights_is_refused_as_pretrained(
    tmp_path: Path,
) -> None:
    source = lp.create_backbone("resnet18", pretrained=None, width=8)
    folder = save_backbone(tmp_path / "source", source, domain="image", name="resnet18")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.safetensors does not match the SHA-256"):
        build_backbone("resnet18", str(folder))


# -- 3. readers that cannot mis-read --------------------------------------------------------------


def _text(**source: Any) -> Any:
    return lp.load_data("text", [source])


def test_a_text_header_naming_the_label_column_otherwise_reads_two_classes(
    tmp_path: Path,
) -> None:
    rows = ["text,sentiment"] + [f"review {i},{('neg', 'pos')[i % 2]}" for i in range(20)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="the labels are read from 'sentiment'"):
        bundle = _text(path=str(tmp_path / "reviews.csv"))
    names = bundle.label_names
    assert names == ["neg", "pos"]
    texts = [t for s in (bundle.train, bundle.validation, bundle.test) for t in s["text"]]
    assert len(texts) == 20 and "text" not in texts


def test_a_stray_label_and_an_empty_text_column_are_reported(tmp_path: Path) -> None:
    rows = ["text,label"] + [f"review {i},{i % 2}" for i in range(10)] + ["odd one,positive"]
    (tmp_path / "stray.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"stray\.csv, row 12: label 'positive' is not a number"):
        _text(path=str(tmp_path / "stray.csv"))
    bad = BadRecords("skip")
    read = lp.create_domain("text").load({"path": str(tmp_path / "stray.csv")}, bad_records=bad)
    assert read.features["label"].names == ["0", "1"] and len(read) == 10
    assert [(r["row"], "positive" in r["reason"]) for r in bad.to_json()] == [(12, True)]
    with pytest.raises(DataError, match=r"label 'positive' is not among label_names"):
        _text(path=str(tmp_path / "stray.csv"), label_names=["0", "1"])
    (tmp_path / "empty.csv").write_text("text,label\n,0\n ,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: the text column 'text' is empty in all 2"):
        _text(path=str(tmp_path / "empty.csv"))


@pytest.mark.parametrize("domain", ["text", "speech"])
def test_a_misspelled_source_key_is_refused_by_name(domain: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lable_column'\]; did you mean"):
        lp.create_domain(domain).load(
            {"path": str(tmp_path), "lable_column": "y"}, bad_records=BadRecords()
        )


def test_an_audio_file_of_an_unread_type_is_listed_not_ignored(tmp_path: Path) -> None:
    from lepton_speech.audio import encode_wav

    for label in ("yes", "no"):
        for i in range(2):
            folder = tmp_path / label
            folder.mkdir(exist_ok=True)
            wave = np.sin(np.linspace(0, 40 * (i + 1), 1600)).astype(np.float32)
            (folder / f"{i}.wav").write_bytes(encode_wav(wave, 16000))
    (tmp_path / "yes" / "extra.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00")
    (tmp_path / "yes" / "notes.txt").write_text("not audio")
    with pytest.raises(DataError, match=r"extra\.mp3.*a \.mp3 file, which the speech domain"):
        lp.create_domain("speech").load({"path": str(tmp_path)}, bad_records=BadRecords())
    bad = BadRecords("skip")
    read = lp.create_domain("speech").load({"path": str(tmp_path)}, bad_records=bad)
    assert len(read) == 4
    assert [Path(r["file"]).name for r in bad.to_json()] == ["extra.mp3"]


# -- 4. plugins: no name settled by load order; exits, prints and slow imports contained ----

SHADOW = """
from lepton_platform import BackboneSpec, hookimpl

@hookimpl
def lepton_backbones():
    return [BackboneSpec(name="resnet18", factory=dict, domain="image")]
"""


def test_a_shadowing_slow_noisy_or_exiting_plugin_is_contained_and_named(
    lepton_fake_site: FakeSite,
) -> None:
    lepton_fake_site.add("aaa-shadow", {"shadow": "aaa_shadow"}, {"aaa_shadow.py": SHADOW})
    slow = "import time\ntime.sleep(1.2)\nprint('loaded!')\n"
    lepton_fake_site.add("aaa-slow", {"slow": "aaa_slow"}, {"aaa_slow.py": slow})
    exits = "import sys\nsys.exit(3)\n"
    lepton_fake_site.add("aaa-exits", {"exits": "aaa_exits"}, {"aaa_exits.py": exits})
    host = PluginHost(environ={}).load()
    with pytest.raises(PluginError) as refused:
        host.get("backbone", "resnet18")
    assert "provided by both" in str(refused.value)
    assert "aaa-shadow 1.0" in str(refused.value) and "lepton-image" in str(refused.value)
    assert host.get("backbone", "resnet34").provider.distribution == "lepton-image"  # type: ignore[union-attr]
    for prefer, winner in (("lepton-image", "lepton-image"), ("resnet18=aaa-shadow", "aaa-shadow")):
        chosen = PluginHost(environ={"LEPTON_PREFER": prefer}).load()
        assert chosen.get("backbone", "resnet18").provider.distribution == winner  # type: ignore[union-attr]
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "lepton"), "plugins", "--json"],
        capture_output=True,
        text=True,
        env=lepton_fake_site.env(HF_HUB_OFFLINE="1"),
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    plugins = json.loads(listed.stdout)["plugins"]
    shadow = next(p for p in plugins if p["distribution"] == "aaa-shadow")
    assert shadow["status"] == "error" and "provided by both" in shadow["errors"][0]
    assert "loaded!" not in listed.stdout  # a plugin's print never reaches --json
    found = {p["distribution"]: p for p in plugins}
    assert found["aaa-exits"]["status"] == "broken"
    assert "SystemExit: 3" in found["aaa-exits"]["errors"][0]
    assert found["aaa-slow"]["import_seconds"] >= 1.2
    warned = " ".join(found["aaa-slow"]["warnings"])
    assert "s to import, which every lepton command pays" in warned and "printed" in warned
    assert found["lepton-text"]["status"] == "ok"  # the rest load


def test_a_config_chooses_the_provider_of_a_contested_name(
    lepton_fake_site: FakeSite, tmp_path: Path
) -> None:
    from lepton_platform._host import set_host
    from lepton_platform.api.config import load_config

    lepton_fake_site.add("aaa-shadow", {"shadow": "aaa_shadow"}, {"aaa_shadow.py": SHADOW})
    config = "domain: image\ndata: {sources: [imgs]}\nbackbone: resnet18\n"
    (tmp_path / "imgs").mkdir()
    plain, chosen = tmp_path / "plain.yaml", tmp_path / "chosen.yaml"
    plain.write_text(config)
    chosen.write_text(config + "plugins: {prefer: [lepton-image]}\n")
    previous = set_host(PluginHost(environ={}))
    try:
        with pytest.raises(LeptonError, match=r"provided by both .*LEPTON_PREFER"):
            load_config(plain)
        load_config(chosen)  # the names are checked after the choice
        spec = lp.get_backbone("resnet18")
        assert spec.provider.distribution == "lepton-image"  # type: ignore[union-attr]
        bad = tmp_path / "bad.yaml"
        bad.write_text(config + "plugins: {prefer: ['backbone:resnet18=']}\n")
        with pytest.raises(ConfigError, match=r"plugins\.prefer: .*malformed"):
            load_config(bad)
    finally:
        set_host(previous)


# -- 5. run folders: stale locks, dead holders, what a kill left ----------------------------------


def test_a_stale_lock_and_a_dead_holders_status_do_not_block_a_resume(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "tiny"
    run = RunFolder.open(folder, SNAPSHOT)
    run.mark("running")
    run.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    status = read_status(folder)
    status["pid"] = pid  # a process that has exited: killed while running
    (folder / "status.json").write_text(json.dumps(status))
    (tmp_path / "runs" / ".tiny.lock").write_text(json.dumps({"pid": pid, "host": status["host"]}))
    assert [r.state for r in list_runs(tmp_path / "runs")] == [STOPPED]
    with pytest.raises(ConfigError, match=rf"state: running when its process stopped \({STOPPED}"):
        RunFolder.open(folder, SNAPSHOT)
    resumed = RunFolder.open(folder, SNAPSHOT, resume=True)
    assert resumed.resumed and read_status(folder)["pid"] == os.getpid()
    resumed.fail(KeyboardInterrupt())
    assert read_status(folder)["state"] == "interrupted"


HOLDER = """
import sys, time
from lepton_platform.api.runs import RunFolder
run = RunFolder.open(sys.argv[1], {"domain": "tabular", "train": {"epochs": 1}})
run.mark("running")
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A run folder opened and held by another live process."""
    folder = tmp_path / "runs" / "busy"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield folder, process.pid
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("how", ["plain", "resume", "overwrite"])
def test_a_folder_a_live_process_holds_is_refused_naming_it(
    how: str, held: tuple[Path, int]
) -> None:
    folder, pid = held
    with pytest.raises(ConfigError, match=rf"is in use by process {pid} on "):
        RunFolder.open(folder, SNAPSHOT, resume=how == "resume", overwrite=how == "overwrite")
    assert read_status(folder)["state"] == "running" and read_status(folder)["pid"] == pid
    assert not list(folder.parent.glob(".busy.replaced-*"))


def test_what_a_killed_write_left_is_tidied(tmp_path: Path) -> None:
    parent = tmp_path / "checkpoints"
    (parent / ".old-best-1234").mkdir(parents=True)  # moved aside, replacement never renamed in
    (parent / ".old-best-1234" / "model.safetensors").write_bytes(b"kept")
    (parent / ".tmp-step-00000004-99").mkdir()
    (parent / ".metrics.json.abc.tmp").write_text("{")
    done = recover_folders(parent)
    assert sorted(p.name for p in parent.iterdir()) == ["best"]
    assert (parent / "best" / "model.safetensors").read_bytes() == b"kept"
    assert len(done) == 3 and any("put back" in line for line in done)
    runs = tmp_path / "runs"
    (runs / ".tiny.replaced-1-2").mkdir(parents=True)  # an --overwrite killed before the new run
    (runs / ".tiny.replaced-1-2" / "status.json").write_text('{"state": "finished"}')
    with pytest.raises(ConfigError, match="already exists"):
        RunFolder.open(runs / "tiny", SNAPSHOT)
    assert read_status(runs / "tiny")["state"] == "finished" and not list(runs.glob(".tiny.*d-*"))


# -- 7. full disk and read-only output -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as handle, pytest.raises(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()


def test_a_full_disk_is_a_clear_error_and_earlier_checkpoints_stay_whole(
    small_disk: Path,
) -> None:
    checkpoints = small_disk / "checkpoints"
    with ckpt.CheckpointWriter(checkpoints / "step-00000001") as writer:
        writer.write_tensors("model.safetensors", {"w": torch.ones(4)}, {})
        writer.commit()
    run = RunFolder.open(small_disk / "runs" / "full", SNAPSHOT)
    run.mark("running")
    _fill(small_disk)
    big = {"w": torch.zeros(512, 1024)}  # 2 MiB: safetensors hits the full disk
    writer = ckpt.CheckpointWriter(checkpoints / "step-00000002")
    with pytest.raises(WriteError) as full, writer:
        writer.write_tensors("model.safetensors", big, {})
    text = str(full.value)
    assert "step-00000002/model.safetensors" in text and "No space left on device" in text
    assert [p.name for p in ckpt.list_checkpoints(checkpoints)] == ["step-00000001"]
    ckpt.verify_checkpoint(checkpoints / "step-00000001")
    with pytest.raises(ArtifactError, match=r"cannot write .*result\.json: No space left"):
        run.write_json("result.json", {"rows": list(range(100000))})
    run.fail(RuntimeError("the disk is full"))
    status = read_status(small_disk / "runs" / "full")
    assert status["state"] == "failed" and "the disk is full" in status["error"]


def test_a_read_only_output_root_is_a_clear_error(small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(ArtifactError) as refused:
        RunFolder.open(small_disk / "runs" / "ro", SNAPSHOT)
    text = str(refused.value)
    assert str(small_disk / "runs") in text and "Read-only file system" in text
    assert "output.root" in text
    with pytest.raises(WriteError, match="Read-only file system"):
        atomic_write_bytes(small_disk / "x.bin", b"data")


# -- 9. caches are never trusted blindly ----------------------------------------------------------


def test_a_planted_or_truncated_feature_cache_file_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.numpy import save

    from lepton_platform.data import prepare
    from lepton_platform.engine import features as feats

    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    data = lp.load_data("tabular", [{"path": str(_vectors(tmp_path))}]).train
    backbone = lp.create_backbone("mlp", num_features=3, hidden=[4])
    pre = backbone.preprocessor()
    ready = prepare(data, pre)
    truth, _ = feats.extract_features(backbone, ready, pre, cache=False, progress=False)
    first, _ = feats.extract_features(backbone, ready, pre, progress=False)
    (cached,) = list(feats.features_cache_dir().glob("*.safetensors"))
    np.testing.assert_array_equal(first, truth)
    planted = np.full_like(truth, 7.0)
    cached.write_bytes(save({"features": planted}, metadata={"key": "x", "rows": str(len(data))}))
    with pytest.warns(UserWarning, match="made for another backbone"):
        again, _ = feats.extract_features(backbone, ready, pre, progress=False)
    np.testing.assert_array_equal(again, truth)
    cached.write_bytes(cached.read_bytes()[:-16])
    with pytest.warns(UserWarning, match="unreadable"):
        again, _ = feats.extract_features(backbone, ready, pre, progress=False)
    np.testing.assert_array_equal(again, truth)


def _vectors(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["f1,f2,f3,label"] + [
        ",".join(f"{v:.3f}" for v in rng.normal(size=3)) + f",{'ab'[i % 2]}" for i in range(24)
    ]
    path = folder / "vectors.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- 10. exact resume: another thread count is announced -----------------------------------------


def test_resuming_under_another_thread_count_warns_that_it_is_not_bit_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = torch.get_num_threads()
    monkeypatch.setattr(ckpt, "_warned", set())
    try:
        torch.set_num_threads(1)
        with ckpt.CheckpointWriter(tmp_path / "step-00000001") as writer:
            writer.write_tensors("model.safetensors", {"w": torch.ones(2)}, {})
            writer.commit()
        manifest = json.loads((tmp_path / "step-00000001" / "manifest.json").read_text())
        assert manifest["environment"]["threads"] == 1
        assert manifest["environment"]["torch"] == torch.__version__
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ckpt.verify_checkpoint(tmp_path / "step-00000001")  # same environment: silent
        torch.set_num_threads(2)
        with pytest.warns(UserWarning, match=r"threads: 1 when saved, 2 now.*not be bit-exact"):
            ckpt.verify_checkpoint(tmp_path / "step-00000001")
    finally:
        torch.set_num_threads(threads)


def test_a_checkpoint_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path: Path) -> None:
    with ckpt.CheckpointWriter(tmp_path / "step-00000001") as writer:
        writer.write_tensors("model.safetensors", {"w": torch.ones(2)}, {})
        writer.commit()
    manifest_path = tmp_path / "step-00000001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    manifest["files"]["../outside.safetensors"] = {"sha256": "0" * 64, "bytes": 1}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"names '\.\./outside\.safetensors', not a plain"):
        ckpt.verify_checkpoint(tmp_path / "step-00000001")
    manifest["files"] = {"model.safetensors": "deadbeef"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest\.json is malformed; delete"):
        ckpt.verify_checkpoint(tmp_path / "step-00000001")


# -- 12. the manifest is protected ---------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    backbone = lp.create_backbone("mlp", num_features=3, hidden=[4])
    return save_backbone(
        tmp_path / "model", backbone, domain="tabular", name="mlp", label_names=("no", "yes")
    )


def _edit(folder: Path, change: Any) -> None:
    path = folder / "lepton.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_editing_the_label_names_of_a_saved_model_is_detected(saved: Path) -> None:
    assert lp.load(saved).label_names == ["no", "yes"]
    _edit(saved, lambda m: m["label_names"].reverse())
    with pytest.raises(ArtifactError, match=r"lepton\.json was edited after the model was saved"):
        lp.load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["weights"].update(file="../../x"), "must be a plain file name"),
        (lambda m: m["weights"].update(sha256=7), "weights.sha256 must be the 64 hex digits"),
        (lambda m: m["weights"].update(bytes="many"), "weights.bytes must be the weights' size"),
        (lambda m: m.update(label_names=["a", "a"]), "name a label twice"),
        (lambda m: m.update(preprocessing=[1]), "preprocessing must be a mapping"),
        (lambda m: m.update(backbone="mlp"), "the 'backbone' entry is missing or not a mapping"),
    ],
    ids=["file-outside", "sha256", "bytes", "labels-twice", "preprocessing", "backbone"],
)
def test_malformed_manifest_values_are_artifact_errors(
    saved: Path, change: Any, message: str
) -> None:
    _edit(saved, change)
    with pytest.raises(ArtifactError, match=message) as refused:
        lp.load(saved)
    assert str(saved / "lepton.json") in str(refused.value)


def test_identical_models_are_saved_as_identical_bytes(tmp_path: Path) -> None:
    files = []
    for name in ("one", "two"):
        torch.manual_seed(0)
        backbone = lp.create_backbone("mlp", num_features=3, hidden=[4])
        folder = save_backbone(tmp_path / name, backbone, domain="tabular", name="mlp")
        files.append((folder / "model.safetensors").read_bytes())
    assert files[0] == files[1]
