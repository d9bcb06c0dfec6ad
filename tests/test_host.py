"""The plugin host: one test per hook (registered in process), discovery through entry points,
the environment switches, lazy loading that happens once, and in-process registration."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

import lepton_platform as lp
from lepton_platform import (
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    PluginError,
    PluginHost,
    StrategySpec,
    TaskSpec,
    hookimpl,
)
from lepton_platform.cli.main import main
from lepton_platform.errors import ConfigError
from lepton_platform.testing import FakeSite


class Plugin:
    """An in-process plugin: each keyword becomes a hook returning those specs."""

    def __init__(self, **hooks: list[Any]) -> None:
        for hook_name, specs in hooks.items():
            setattr(self, hook_name, self._hook(specs))

    @staticmethod
    def _hook(specs: list[Any]) -> Any:
        @hookimpl
        def hook() -> list[Any]:
            return specs

        return hook


# -- one test per hook -----------------------------------------------------------------------


def test_lepton_domains_hook(lepton_host: PluginHost) -> None:
    made: list[dict[str, Any]] = []

    def factory(**options: Any) -> str:
        made.append(options)
        return "a domain"

    spec = DomainSpec(name="sat", modality="image", factory=factory, description="Satellite")
    info = lp.register_plugin(Plugin(lepton_domains=[spec]), "sat", distribution="acme-sat")
    assert info.provides == {"domain": ["sat"]}
    assert [s.name for s in lp.list_domains(modality="image")] == ["sat"]
    got = lp.get_domain("sat")
    assert got.provider is not None and got.provider.distribution == "acme-sat"
    assert lp.create_domain("sat", bands=4) == "a domain"
    assert made == [{"bands": 4}]


def test_lepton_backbones_hook(lepton_host: PluginHost) -> None:
    def factory(pretrained: str | None = None, width: int = 2) -> tuple[str | None, int]:
        return pretrained, width

    spec = BackboneSpec(name="tiny-net", domain="sat", factory=factory, tiny_options={"width": 1})
    lp.register_plugin(Plugin(lepton_backbones=[spec]), "nets")
    assert lp.create_backbone("tiny-net", pretrained="w.safetensors", width=3) == (
        "w.safetensors",
        3,
    )
    assert dict(lp.get_backbone("tiny-net").tiny_options) == {"width": 1}
    with pytest.raises(ConfigError, match=r"has no option 'widht'; did you mean 'width'\?"):
        lp.create_backbone("tiny-net", widht=3)


def test_lepton_tasks_hook(lepton_host: PluginHost) -> None:
    spec = TaskSpec(name="ordinal", factory=lambda label_names: list(label_names))
    lp.register_plugin(Plugin(lepton_tasks=[spec]), "ordinal")
    assert lp.create_task("ordinal", label_names=("low", "high")) == ["low", "high"]
    assert {s.name for s in lp.list_tasks()} == {
        "classification",
        "multilabel-classification",
        "ordinal",
    }


def test_lepton_strategies_hook(lepton_host: PluginHost) -> None:
    def biasonly(lr: float = 1e-3) -> dict[str, float]:
        if lr <= 0:
            raise ConfigError(f"biasonly: lr must be positive, got {lr}")
        return {"lr": lr}

    spec = StrategySpec(
        name="biasonly", factory=biasonly, paper="Example et al. 2099", parameters={"lr": "rate"}
    )
    lp.register_plugin(Plugin(lepton_strategies=[spec]), "biasonly")
    assert lp.create_strategy("biasonly", lr=0.5) == {"lr": 0.5}
    with pytest.raises(ConfigError, match="lr must be positive"):
        lp.create_strategy("biasonly", lr=-1.0)
    assert lp.get_strategy("biasonly").summary()["parameters"] == {"lr": "rate"}
    assert [s.name for s in lp.list_strategies(paper="Example et al. 2099")] == ["biasonly"]


def test_lepton_metrics_hook(lepton_host: PluginHost) -> None:
    class Agreement:
        def compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
            same = sum(p == r for p, r in zip(predictions, references, strict=True))
            return {"agreement": same / len(references)}

    spec = MetricSpec(name="agreement", factory=Agreement, higher_is_better=True)
    lp.register_plugin(Plugin(lepton_metrics=[spec]), "agreement")
    metric = lp.create_metric("agreement")
    assert metric.compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 1]) == {"agreement": 0.75}
    assert lp.list_metrics("agree*", needs_scores=False) == [lp.get_metric("agreement")]
    assert lp.list_metrics("agree*", needs_scores=True) == []


def test_lepton_commands_hook(lepton_host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--who", default="world")

    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.who}")
        return 3

    spec = CommandSpec(name="hello", run=run, configure=configure, description="Say hello")
    lp.register_plugin(Plugin(lepton_commands=[spec]), "hello")
    assert main(["hello", "--who", "lepton"]) == 3
    assert capsys.readouterr().out == "hello lepton\n"
    assert {"hello", "plugins"} <= {s.name for s in lp.list_commands()}
    assert lp.list_commands("hel*")[0].provider.distribution == "hello"  # type: ignore[union-attr]


# -- in-process registration ---------------------------------------------------------------


def test_the_fixture_host_is_isolated(lepton_host: PluginHost) -> None:
    assert lp.get_host() is lepton_host
    assert lp.list_backbones() == []  # installed plugins (lepton-tabular) are not discovered
    assert [p.distribution for p in lp.list_plugins()] == ["lepton-platform"]


def test_register_and_unregister_in_process(lepton_host: PluginHost) -> None:
    spec = TaskSpec(name="regress", factory=dict, description="regression")
    info = lp.register_plugin(Plugin(lepton_tasks=[spec]), "mine", version="0.3")
    assert info.status == "ok" and info.distribution == "mine"
    assert str(lp.get_task("regress").provider) == "mine 0.3"
    with pytest.raises(PluginError, match="a plugin named 'mine' is already registered"):
        lp.register_plugin(Plugin(), "mine")
    lp.unregister_plugin("mine")
    with pytest.raises(lp.UnknownNameError):
        lp.get_task("regress")


def test_a_bad_in_process_plugin_is_reported_not_raised(lepton_host: PluginHost) -> None:
    info = lp.register_plugin(Plugin(lepton_tasks=["not a spec"]), "sloppy")
    assert info.status == "error"
    assert "hook lepton_tasks returned str ('not a spec'); expected TaskSpec" in info.errors[0]
    assert "classification" in {s.name for s in lp.list_tasks()}


def test_a_clash_with_a_builtin_is_refused_until_one_is_chosen(lepton_host: PluginHost) -> None:
    info = lp.register_plugin(
        Plugin(lepton_tasks=[TaskSpec(name="classification", factory=dict)]), "copycat"
    )
    message = (
        f"task 'classification' is provided by both lepton-platform {lp.__version__} and "
        "copycat; it is not used until you choose one: set LEPTON_PREFER=lepton-platform or "
        "LEPTON_PREFER=copycat (or task:classification=DISTRIBUTION for this name alone), or "
        "disable a plugin with LEPTON_DISABLE_PLUGINS"
    )
    assert info.errors == [message]
    with pytest.raises(PluginError) as refused:
        lp.get_task("classification")
    assert str(refused.value) == message
    lepton_host.prefer("lepton-platform")
    spec = lp.get_task("classification")
    assert spec.provider is not None and spec.provider.distribution == "lepton-platform"
    assert lepton_host.plugins_by_name()["copycat"].status == "ok"
    assert "which LEPTON_PREFER chose" in lepton_host.plugins_by_name()["copycat"].notes[0]
    lepton_host.prefer("task:classification=copycat")
    assert str(lp.get_task("classification").provider) == "copycat"


def test_strict_host_raises_on_a_bad_in_process_plugin() -> None:
    host = PluginHost(discover=False, strict=True)
    with pytest.raises(PluginError, match="plugin 'sloppy'"):
        host.register(Plugin(lepton_tasks=[42]), "sloppy")


def test_check_pending_catches_a_misspelled_hook_registered_directly(
    lepton_host: PluginHost,
) -> None:
    class Typo:
        @hookimpl
        def lepton_task(self) -> list[TaskSpec]:
            return []

    info = lepton_host.register(Typo(), "typo")
    assert info.status == "broken"
    assert "unknown hook 'lepton_task'; did you mean 'lepton_tasks'" in info.errors[0]
    lepton_host.check_pending()  # the host refused it, so nothing is left pending
    lepton_host._pm.register(Typo(), name="raw")  # straight into pluggy, bypassing the host
    with pytest.raises(PluginError, match="unknown hook 'lepton_task'"):
        lepton_host.check_pending()


# -- discovery and the switches --------------------------------------------------------------

COUNTED = """
from lepton_platform import TaskSpec, hookimpl

CALLS = []

@hookimpl
def lepton_tasks():
    CALLS.append(1)
    return [TaskSpec(name="{task}", factory=dict, description="counted")]
"""


def install_two(site: FakeSite) -> None:
    for dist in ("acme-one", "acme_two"):
        module = dist.replace("-", "_") + "_mod"
        task = dist.replace("_", "-") + "-task"
        site.add(
            dist,
            {dist.split("-")[-1].split("_")[-1]: module},
            {f"{module}.py": COUNTED.replace("{task}", task)},
        )


def test_discovery_is_lazy_and_happens_once(lepton_fake_site: FakeSite) -> None:
    install_two(lepton_fake_site)
    host = PluginHost(environ={"LEPTON_PLUGINS": "acme-one"})
    assert "acme_one_mod" not in sys.modules  # nothing imported before the first question
    assert "acme-one-task" in host.specs("task")
    module = sys.modules["acme_one_mod"]
    host.load()
    host.specs("task")
    assert host.plugins
    host.list("task", "acme-*")
    assert module.CALLS == [1]
    assert sys.modules["acme_one_mod"] is module


def test_lepton_plugins_selects_distributions(lepton_fake_site: FakeSite) -> None:
    install_two(lepton_fake_site)
    only = PluginHost(environ={"LEPTON_PLUGINS": "ACME.two"})  # names compare as PyPI does
    assert sorted(p.distribution for p in only.plugins) == ["acme_two", "lepton-platform"]
    none = PluginHost(environ={"LEPTON_PLUGINS": ""})
    assert [p.distribution for p in none.plugins] == ["lepton-platform"]
    by_entry_point = PluginHost(environ={"LEPTON_PLUGINS": "one"})
    assert "acme-one-task" in by_entry_point.specs("task")


def test_lepton_disable_plugins_skips_distributions(lepton_fake_site: FakeSite) -> None:
    install_two(lepton_fake_site)
    host = PluginHost(environ={"LEPTON_DISABLE_PLUGINS": "acme-two, lepton-tabular"})
    names = {p.distribution for p in host.plugins}
    assert "acme-one" in names
    assert "acme_two" not in names and "lepton-tabular" not in names
    assert "acme-two-task" not in host.specs("task")


def test_every_installed_plugin_loads_by_default(lepton_fake_site: FakeSite) -> None:
    install_two(lepton_fake_site)
    host = PluginHost(environ={})
    info = {p.distribution: p for p in host.plugins}
    assert {"acme-one", "acme_two", "lepton-tabular", "lepton-platform"} <= set(info)
    assert info["acme-one"].version == "1.0"
    assert info["lepton-platform"].builtin and not info["acme-one"].builtin


def test_the_process_wide_host_is_made_once() -> None:
    old = lp.set_host(None)
    try:
        first = lp.get_host()
        assert lp.get_host() is first
        assert any(p.distribution == "lepton-tabular" for p in first.plugins)
    finally:
        lp.set_host(old)
