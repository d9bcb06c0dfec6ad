"""The registry: ``list_*`` with a glob and metadata filters, ``get_*`` with the closest names
for an unknown one, ``create_*`` refusing options the factory does not take."""

from __future__ import annotations

from typing import Any

import pytest

import lepton_platform as lp
from lepton_platform import BackboneSpec, PluginHost, hookimpl
from lepton_platform.errors import ConfigError, UnknownNameError


def _backbone(pretrained: str | None = None, depth: int = 1) -> dict[str, Any]:
    return {"pretrained": pretrained, "depth": depth}


class Zoo:
    """A plugin with a few backbones of two domains."""

    @hookimpl
    def lepton_backbones(self) -> list[BackboneSpec]:
        return [
            BackboneSpec(
                name="resnet18",
                domain="image",
                family="resnet",
                factory=_backbone,
                metadata={"size": "small", "tags": ("cnn", "imagenet")},
            ),
            BackboneSpec(
                name="resnet50",
                domain="image",
                family="resnet",
                factory=_backbone,
                metadata={"size": "large", "tags": ("cnn",)},
            ),
            BackboneSpec(
                name="bert-tiny",
                domain="text",
                family="bert",
                factory=_backbone,
                metadata={"size": "small"},
            ),
        ]


@pytest.fixture
def zoo(lepton_host: PluginHost) -> PluginHost:
    lp.register_plugin(Zoo(), "zoo", distribution="acme-zoo", version="2.1")
    return lepton_host


def names(specs: list[BackboneSpec]) -> list[str]:
    return [s.name for s in specs]


def test_list_sorted_by_name(zoo: PluginHost) -> None:
    assert names(lp.list_backbones()) == ["bert-tiny", "resnet18", "resnet50"]


@pytest.mark.parametrize(
    ("pattern", "filters", "expected"),
    [
        ("resnet*", {}, ["resnet18", "resnet50"]),
        ("*1?", {}, ["resnet18"]),
        (None, {"domain": "text"}, ["bert-tiny"]),
        (None, {"family": "resnet", "size": "small"}, ["resnet18"]),
        (None, {"size": "small"}, ["bert-tiny", "resnet18"]),
        (None, {"tags": "cnn"}, ["resnet18", "resnet50"]),
        (None, {"tags": "imagenet"}, ["resnet18"]),
        ("resnet*", {"domain": "text"}, []),
        (None, {"no_such_key": "x"}, []),
    ],
)
def test_list_glob_and_filters(
    zoo: PluginHost, pattern: str | None, filters: dict[str, Any], expected: list[str]
) -> None:
    assert names(lp.list_backbones(pattern, **filters)) == expected


def test_entries_know_their_provider(zoo: PluginHost) -> None:
    provider = lp.get_backbone("resnet50").provider
    assert provider is not None
    assert (provider.distribution, provider.version, provider.plugin) == ("acme-zoo", "2.1", "zoo")
    assert lp.get_backbone("resnet50").summary() == {
        "name": "resnet50",
        "kind": "backbone",
        "domain": "image",
        "family": "resnet",
        "metadata": {"size": "large", "tags": ["cnn"]},
    }


def test_unknown_names_get_the_closest_known_names(zoo: PluginHost) -> None:
    with pytest.raises(UnknownNameError) as info:
        lp.get_backbone("resnet19")
    assert str(info.value) == (
        "backbone 'resnet19' is not registered; did you mean 'resnet18' or 'resnet50'?"
    )
    with pytest.raises(UnknownNameError, match=r"did you mean 'classification'"):
        lp.create_task("clasification", label_names=["a", "b"])
    with pytest.raises(UnknownNameError, match="did you mean 'bert-tiny'"):
        lp.create_backbone("bert_tiny")
    with pytest.raises(UnknownNameError, match=r"unknown spec kind 'backbones'; did you mean"):
        zoo.specs("backbones")


def test_nothing_close_lists_what_exists(lepton_host: PluginHost) -> None:
    with pytest.raises(UnknownNameError, match=r"nothing of this kind is registered"):
        lp.get_domain("image")
    with pytest.raises(UnknownNameError, match=r"known: classification, multilabel"):
        lp.get_task("zzz")


def test_create_passes_options_and_refuses_unknown_ones(zoo: PluginHost) -> None:
    assert lp.create_backbone("resnet18", pretrained="/w", depth=3) == {
        "pretrained": "/w",
        "depth": 3,
    }
    with pytest.raises(ConfigError) as info:
        lp.create_backbone("resnet18", deepth=3)
    message = str(info.value)
    assert "backbone 'resnet18' (from acme-zoo 2.1) has no option 'deepth'" in message
    assert "did you mean 'depth'" in message and "accepted: pretrained, depth" in message
