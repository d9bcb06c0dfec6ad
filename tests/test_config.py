"""The run config: validation errors that name the key, the value and what is allowed; --set
overrides; the Python API round trip; no torch while parsing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_platform.api.config import (
    RunConfig,
    TrainSection,
    apply_overrides,
    config_differences,
    load_config,
    parse_config,
)
from lepton_platform.errors import ConfigError


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n", encoding="utf-8")
    return path


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
domain: tabular
data:
  sources: [{path: data.csv}]
  split: {validation: 0.2, test: 0.2}
backbone: {name: mlp, options: {num_features: 2, hidden: [8]}}
strategy: {name: lp-ft, params: {ft_lr: 0.001}}
train: {epochs: 2, lr: 0.01}
evaluation: {metrics: [accuracy, f1], bootstrap: 50}
"""


def errors_of(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=overrides)
    return str(info.value)


def test_a_good_config_fills_defaults_and_resolves_paths(tmp_path: Path, data_csv: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.domain.name == "tabular"
    assert config.data.sources[0].path == str(data_csv.resolve())
    assert config.strategy.name == "lp-ft"
    assert config.task.name == "classification"
    assert config.output.name == "run"  # the config file's name
    assert config.output.root == "runs"
    kwargs = config.to_transfer_kwargs()
    assert kwargs["train"] == {"epochs": 2, "lr": 0.01}  # only what the config set
    assert kwargs["split"] == {"validation": 0.2, "test": 0.2}
    assert kwargs["strategy_params"] == {"ft_lr": 0.001}
    assert kwargs["metrics"] == ["accuracy", "f1"]
    assert kwargs["bootstrap"] == 50
    assert kwargs["data"] == [{"path": str(data_csv.resolve())}]


def test_shorthands_for_named_sections_and_data(tmp_path: Path, data_csv: Path) -> None:
    text = "domain: tabular\ndata: data.csv\nbackbone: mlp\nstrategy: freeze\n"
    config = load_config(write(tmp_path, text))
    assert config.backbone.name == "mlp"
    assert config.strategy.name == "freeze"
    assert len(config.data.sources) == 1


def test_not_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "domain: tabular\n  data: [x\n")
    message = errors_of(path)
    assert str(path) in message
    assert "not valid YAML at line 2" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in errors_of(write(tmp_path, "- a\n- b\n"))
    assert "empty" in errors_of(write(tmp_path, ""))
    assert "no such config file" in errors_of(tmp_path / "absent.yaml")


def test_unknown_keys_suggest_the_closest(tmp_path: Path, data_csv: Path) -> None:
    message = errors_of(write(tmp_path, GOOD.replace("lr: 0.01", "lrate: 0.01")))
    assert "train.lrate: unknown key; did you mean 'lr'?" in message
    message = errors_of(write(tmp_path, GOOD + "evalution: {bootstrap: 0}\n"))
    assert "evalution: unknown key; did you mean 'evaluation'" in message


def test_wrong_types_name_the_key_and_value(tmp_path: Path, data_csv: Path) -> None:
    message = errors_of(write(tmp_path, GOOD.replace("epochs: 2", "epochs: two")))
    assert "train.epochs" in message and "'two'" in message and "integer" in message
    message = errors_of(write(tmp_path, GOOD.replace("bootstrap: 50", "bootstrap: -1")))
    assert "evaluation.bootstrap" in message and "-1" in message
    message = errors_of(write(tmp_path, GOOD + "train: {optimizer: adam}\n"))
    assert "train.optimizer" in message and "'adamw'" in message and "'adam'" in message


def test_missing_data_path_names_the_key_and_path(tmp_path: Path) -> None:
    message = errors_of(write(tmp_path, GOOD))  # data.csv not written
    assert "data.sources[0].path: 'data.csv' does not exist" in message
    assert str(tmp_path / "data.csv") in message


def test_unknown_strategy_and_metric_suggest_registered_names(
    tmp_path: Path, data_csv: Path
) -> None:
    text = GOOD.replace("name: lp-ft, params: {ft_lr: 0.001}", "name: lpft")
    text = text.replace("[accuracy, f1]", "[acuracy]")
    message = errors_of(write(tmp_path, text))
    assert "2 problems" in message
    assert "strategy: 'lpft' is not registered; did you mean 'lp-ft'?" in message
    assert "evaluation.metrics[0]: 'acuracy' is not registered; did you mean 'accuracy'" in message


def test_strategy_parameters_and_backbone_domain_are_checked(
    tmp_path: Path, data_csv: Path
) -> None:
    message = errors_of(write(tmp_path, GOOD.replace("ft_lr: 0.001", "ftlr: 0.001")))
    assert "strategy.params.ftlr: strategy 'lp-ft' has no parameter 'ftlr'" in message
    assert "did you mean 'ft_lr'?" in message
    message = errors_of(write(tmp_path, GOOD.replace("domain: tabular", "domain: tabulr")))
    assert "domain: 'tabulr' is not registered; did you mean 'tabular'?" in message


def test_set_overrides_are_yaml_values(tmp_path: Path, data_csv: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(
        path,
        overrides=[
            "train.lr=1e-3",
            "train.early_stopping_patience=null",
            "strategy=finetune",
            "evaluation.metrics=[accuracy]",
            "output.name=other",
            "data.sources.0.path=data.csv",
        ],
    )
    assert config.train.lr == pytest.approx(0.001)
    assert config.strategy.name == "finetune" and config.strategy.params == {}
    assert config.evaluation.metrics == ["accuracy"]
    assert config.output.name == "other"


def test_bad_set_overrides(tmp_path: Path, data_csv: Path) -> None:
    path = write(tmp_path, GOOD)
    assert "expected KEY=VALUE" in errors_of(path, ("train.lr",))
    assert "train.batchsize: unknown key; did you mean 'batch_size'" in errors_of(
        path, ("train.batchsize=4",)
    )
    assert "index below 1" in errors_of(path, ("data.sources.3.path=x.csv",))
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]", "d=true"]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": True,
    }


def test_train_section_is_the_settings_schema_itself() -> None:
    from lepton_platform.settings import SplitConfig, TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(TrainSection.model_fields) == set(fields)
    for name, f in fields.items():
        assert TrainSection.model_fields[name].default == f.default, name
        assert TrainSection.model_fields[name].description, f"train.{name} has no meaning"
    for name in (f.name for f in dataclasses.fields(SplitConfig)):
        assert SplitConfig.schema_model().model_fields[name].description, name


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", -1, "greater than 0"),
        ("epochs", 0, "greater than or equal to 1"),
        ("epochs", True, "valid integer"),
        ("warmup_ratio", 1.0, "less than 1"),
        ("monitor", "acuracy", "not registered; did you mean 'accuracy'"),
    ],
)
def test_yaml_and_python_refuse_the_same_train_values(
    tmp_path: Path, data_csv: Path, key: str, value: object, message: str
) -> None:
    from lepton_platform.settings import TrainConfig

    problems = errors_of(write(tmp_path, GOOD), (f"train.{key}={json.dumps(value)}",))
    assert f"train.{key}" in problems and message in problems
    if key != "monitor":  # a metric name is checked against the registry by the config
        with pytest.raises(ConfigError, match=f"TrainConfig.{key}: .*{message}"):
            TrainConfig(**{key: value})


def test_the_config_and_the_python_api_say_the_same(tmp_path: Path, data_csv: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    kwargs = config.to_transfer_kwargs()
    again = RunConfig.from_transfer_kwargs(**kwargs, output={"name": "run"})
    assert again.snapshot() == config.snapshot()
    assert again.to_transfer_kwargs() == kwargs
    with pytest.raises(ConfigError, match="backbone: a object object has no config form"):
        RunConfig.from_transfer_kwargs(**{**kwargs, "backbone": object()})
    with pytest.raises(ConfigError, match="no argument 'epoch'"):
        RunConfig.from_transfer_kwargs(**kwargs, epoch=3)


def test_compare_kwargs_take_the_cli_flags_over_the_section(tmp_path: Path, data_csv: Path) -> None:
    text = GOOD + "compare: {strategies: [freeze, {name: finetune}], seeds: [4]}\n"
    config = load_config(write(tmp_path, text))
    kwargs = config.compare_kwargs()
    assert kwargs["strategies"] == [
        {"name": "freeze", "params": {}},
        {"name": "finetune", "params": {}},
    ]
    assert kwargs["seeds"] == [4]
    assert "strategy" not in kwargs and "strategy_params" not in kwargs
    flags = config.compare_kwargs(strategies=["linear-probe"], seeds=[0, 1])
    assert flags["strategies"] == ["linear-probe"] and flags["seeds"] == [0, 1]
    with pytest.raises(ConfigError, match=r"compare\.strategies: 'lpft' is not registered"):
        config.compare_kwargs(strategies=["lpft"])


def test_config_differences_name_each_changed_key() -> None:
    old = {"train": {"lr": 0.1, "progress": True}, "output": {"name": "a"}}
    new = {"train": {"lr": 0.2, "progress": False}, "output": {"name": "b"}}
    assert config_differences(old, new, ignore=["output", "train.progress"]) == [
        "train.lr: 0.1 in the run, 0.2 now"
    ]


def test_parse_config_refuses_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["x"])


def test_parsing_a_config_imports_no_torch(tmp_path: Path, data_csv: Path) -> None:
    path = write(tmp_path, GOOD)
    code = (
        "import sys\n"
        "from lepton_platform.api.config import load_config\n"
        f"load_config({str(path)!r}, overrides=['train.lr=0.5'])\n"
        "heavy = [m for m in ('torch', 'datasets', 'transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_the_committed_config_reference_is_up_to_date() -> None:
    from lepton_platform.api.config import config_reference

    committed = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert committed.read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is out of date: run python scripts/gen_docs.py"
    )
    for key in ("`on_bad_record`", "`lr`", "`bootstrap`", "`strategies`", "## `data.split`"):
        assert key in committed.read_text(encoding="utf-8")
