"""The hyper-parameter search on a tiny real problem (tabular MLP, a CSV written here): the
space is checked before any work, trials are scored on validation, weak ones are pruned from
their epoch reports, the study lives in SQLite in the run folder, the best config is written
and trained once more with a single test evaluation, and the report has its pictures."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
import yaml

from lepton_platform.api.config import load_config
from lepton_platform.api.tuning import SearchSpace, tune
from lepton_platform.errors import ConfigError
from tests._tuning_helpers import write_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "search.space is empty"),
        ({"train.lr": {"low": 0.1, "high": 0.01}}, r"low \(0.1\) is above high \(0.01\)"),
        ({"strategy.name": {"type": "categorical", "choices": []}}, "non-empty list of choices"),
        ({"train.lr": {"low": 0.0, "high": 1.0, "log": True}}, "log range needs low > 0"),
        ({"train.lrr": {"low": 0.1, "high": 1.0}}, "train has no key 'lrr'.*'lr'"),
        ({"data.split.seed": [0, 1]}, "'data' section cannot be searched"),
        ({"train.epochs": {"type": "int", "low": 1.5, "high": 3}}, "integer bounds"),
        (
            {"strategy.params.x": {"low": 0, "high": 1, "when": {"strategy.name": "freeze"}}},
            "'strategy.name' is not a searched key",
        ),
    ],
)
def test_bad_search_spaces_are_refused_naming_the_key(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace.parse(space)


def test_strategy_parameter_unknown_to_a_chosen_strategy(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    space = SearchSpace.parse(
        {
            "strategy.name": ["finetune", "freeze"],
            "strategy.params.layer_decay": {"low": 0.5, "high": 1.0},
        }
    )
    with pytest.raises(ConfigError, match="strategy 'freeze' has no parameter 'layer_decay'"):
        space.check(config)


def test_suggest_and_apply_follow_the_conditions() -> None:
    space = SearchSpace.parse(
        {
            "strategy.name": ["finetune", "freeze"],
            "strategy.params.layer_decay": {
                "low": 0.5,
                "high": 1.0,
                "when": {"strategy.name": "finetune"},
            },
            "train.batch_size": [8, 16],
        }
    )
    values = space.suggest(
        optuna.trial.FixedTrial({"strategy.name": "freeze", "train.batch_size": 8})
    )
    assert values == {"strategy.name": "freeze", "train.batch_size": 8}
    raw = space.apply(
        {"strategy": {"name": "finetune", "params": {"layer_decay": 0.9}}, "train": {"lr": 0.1}},
        values,
    )
    assert raw == {
        "strategy": {"name": "freeze", "params": {}},
        "train": {"lr": 0.1, "batch_size": 8},
    }


@pytest.mark.slow
def test_search_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, trials=4)
    messages: list[str] = []
    result = tune(config, progress=messages.append)
    folder = tmp_path / "runs" / "search"
    assert result.folder == folder and result.storage == f"sqlite:///{folder / 'study.db'}"
    assert sum(result.counts.get(s, 0) for s in ("COMPLETE", "PRUNED")) == 4
    # the study is a real SQLite database holding the trials and the config's fingerprint
    with sqlite3.connect(folder / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 4
        attrs = dict(db.execute("select key, value_json from study_user_attributes"))
    assert json.loads(attrs["lepton_fingerprint"])
    study = optuna.load_study(study_name="search", storage=result.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert result.best_value == max(t.value for t in complete)
    assert 0.0 <= result.best_value <= 1.0
    # every trial reported its per-epoch validation accuracy; none touched the test split
    for t in complete:
        assert len(t.intermediate_values) == t.params["train.epochs"]
        assert set(t.user_attrs["validation"]) >= {"accuracy"}
    # the best config is a runnable config holding the best values
    best = load_config(result.best_config)
    assert best.train.lr == pytest.approx(result.best_params["train.lr"])
    assert best.strategy.name == result.best_params["strategy.name"]
    # the final model: trained with it, evaluated once on test, saved
    assert result.final is not None
    assert set(result.final["metrics"]) == {"validation", "test"}
    assert (folder / "final" / "model" / "lepton.json").is_file()
    assert result.final["metrics"]["validation"]["accuracy"] == pytest.approx(result.best_value)
    for name in ("history.png", "importances.png"):
        assert (folder / "figures" / name).read_bytes().startswith(PNG)
    assert set(result.importances) <= set(result.best_params) | {"strategy.params.layer_decay"}
    assert "Optimisation history" in (folder / "report.md").read_text()
    assert json.loads((folder / "tune.json").read_text())["best"]["number"] == result.best_number
    assert any(m.startswith("trial 0 ") for m in messages)

    # the same study again without --resume is refused; with it, nothing is left to run
    with pytest.raises(ConfigError, match=r"already exists.*--resume"):
        tune(config, final=False)
    again = tune(config, resume=True, final=False)
    assert again.counts == result.counts and again.best_number == result.best_number

    # another config cannot continue this study: the difference is named
    text = config.read_text().replace("batch_size: 16", "batch_size: 8")
    config.write_text(text)
    with pytest.raises(
        ConfigError, match=r"(?s)another config.*train\.batch_size: 16 in the study, 8"
    ):
        tune(config, resume=True, n_trials=5)


def test_weak_trial_is_pruned_from_its_epoch_reports(tmp_path: Path) -> None:
    from lepton_platform.api.tuning.objective import PruningCallback, monitor_of, run_trial
    from lepton_platform.api.tuning.search import _load_bundle

    config = load_config(write_config(tmp_path))
    bundle = _load_bundle(config)
    # a pruner that wants validation accuracy above 1.5: impossible, so the first report prunes
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.5)
    )
    trial = study.ask()
    callback = PruningCallback(trial, monitor_of(config))
    assert callback.key == "val_accuracy"
    with pytest.raises(optuna.TrialPruned, match="pruned after 1 epoch"):
        run_trial(config, bundle, callbacks=(callback,))
    assert callback.step == 1 and 0.0 <= callback.reported[0] <= 1.0
    # the same trial with a pruner that never prunes runs all epochs
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PruningCallback(trial, monitor_of(config))
    assert callback.key == "val_accuracy"
    outcome = run_trial(config, bundle, callbacks=(callback,))
    assert callback.step == 3 and outcome.epochs_reported == 3
    assert outcome.value == pytest.approx(outcome.validation["accuracy"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg2://user:secret@127.0.0.1:1/lepton",
            r"cannot open the study database",
        ),
        # SQLAlchemy 2.1 reads a bare postgresql:// with psycopg 3, which is not installed
        ("postgresql://user:secret@127.0.0.1:1/lepton", r"name the driver: postgresql\+psycopg2"),
        ("sqlite:////no/such/folder/study.db", "does not exist"),
        ("not-a-url", "expected a SQLAlchemy 2 database URL"),
    ],
)
def test_unreachable_storage_fails_before_any_trial(tmp_path: Path, url: str, message: str) -> None:
    config = write_config(tmp_path)
    with pytest.raises(ConfigError, match=message) as info:
        tune(config, storage=url, output_dir=tmp_path / "out")
    assert "secret" not in str(info.value)
    assert not (tmp_path / "out" / "tune.json").exists()


def test_best_config_round_trips_through_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, extra="  pruner: none\n  sampler: random\n", trials=2)
    result = tune(config, final=False)
    assert result.final is None and not (tmp_path / "runs" / "search" / "final").exists()
    data = yaml.safe_load(result.best_config.read_text())
    assert "search" not in data and data["output"]["name"] == "final"


def test_each_worker_and_each_resume_draws_its_own_seed() -> None:
    from lepton_platform.api.tuning.search import worker_seed

    seeds = {worker_seed(0, w, n) for w in ("host-1", "host-2") for n in (0, 4)}
    assert len(seeds) == 4 and all(s is not None and 0 <= s < 2**32 for s in seeds)
    assert worker_seed(0, "host-1", 0) == worker_seed(0, "host-1", 0)  # reproducible
    assert worker_seed(1, "host-1", 0) != worker_seed(0, "host-1", 0)
    assert worker_seed(None, "host-1", 0) is None


@pytest.mark.slow  # several searches: ~30 s on a busy machine
def test_a_resumed_study_never_repeats_a_finished_trials_settings(tmp_path: Path) -> None:
    config = write_config(tmp_path, trials=2, extra="  sampler: random\n  pruner: none\n")
    out = tmp_path / "out"
    tune(config, output_dir=out, final=False, worker="w")
    resumed = tune(config, n_trials=4, resume=True, output_dir=out, final=False, worker="w")
    study = optuna.load_study(study_name="search", storage=resumed.storage)
    finished = [t.params for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 4
    assert len({tuple(sorted(p.items())) for p in finished}) == 4  # trial 0 not repeated


@pytest.mark.slow  # several searches: ~30 s on a busy machine
def test_a_trial_that_draws_taken_settings_is_failed_without_training(tmp_path: Path) -> None:
    config = write_config(tmp_path, trials=3, extra="  sampler: random\n  pruner: none\n")
    messages: list[str] = []
    result = tune(
        config,
        {"strategy.name": ["finetune", "freeze"]},  # two settings for three trials
        output_dir=tmp_path / "out",
        final=False,
        progress=messages.append,
    )
    study = optuna.load_study(study_name="search", storage=result.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["strategy.name"] for t in complete) == ["finetune", "freeze"]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs["duplicate_of"] in {c.number for c in complete}
                          for t in failed)  # fmt: skip
    assert all("epochs_reported" not in t.user_attrs for t in failed)  # never trained
    assert any("drew the settings of trial" in m for m in messages)
    assert messages[-1].startswith("stopping: the sampler keeps drawing settings")
