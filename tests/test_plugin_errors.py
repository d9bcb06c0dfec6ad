"""Errors raised in a plugin's own code reach the user naming the plugin and its distribution,
and a misspelled option is refused by name whatever the factory's signature: a real plugin
package written to disk, imported and registered like an installed one."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform import ConfigError, PluginError, PluginHost

PLUGIN = """
from typing import Any

from lepton_platform import BackboneSpec, hookimpl

OPTIONS = {"num_features": "input width", "hidden": "hidden widths"}


def _make_boom(pretrained: Any = None, **options: Any) -> Any:
    from acme_boom.backbone import Boom

    return Boom(**options)


def _make_fragile(pretrained: Any = None, **options: Any) -> Any:
    raise ValueError("cannot read the weights file")


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(name="boom", domain="tabular", factory=_make_boom, options=OPTIONS,
                     description="an MLP whose forward fails"),
        BackboneSpec(name="fragile", domain="tabular", factory=_make_fragile, options=OPTIONS,
                     description="a backbone that cannot be built"),
    ]
"""

BACKBONE = """
from lepton_tabular.backbone import MLPBackbone


class Boom(MLPBackbone):
    def forward(self, **inputs):
        raise RuntimeError("the boom backbone always fails")
"""


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lepton_host: PluginHost) -> Any:
    package = tmp_path / "acme_boom"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (package / "backbone.py").write_text(textwrap.dedent(BACKBONE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    import importlib

    import lepton_tabular.plugin

    lepton_host.register(lepton_tabular.plugin, "tabular", distribution="lepton-tabular")
    module = importlib.import_module("acme_boom.plugin")
    lepton_host.register(module, "acme", distribution="acme-boom", version="1.0")
    yield module
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "acme_boom"]:
        del sys.modules[name]


def test_a_misspelled_option_of_a_kwargs_factory_is_refused_by_name(acme: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        lp.create_backbone("boom", num_featurs=3)
    message = str(caught.value)
    assert "backbone 'boom' (from acme-boom 1.0) has no option 'num_featurs'" in message
    assert "did you mean 'num_features'?" in message


def test_a_factory_error_names_the_plugin_and_where(acme: Any) -> None:
    with pytest.raises(PluginError) as caught:
        lp.create_backbone("fragile", num_features=3)
    message = str(caught.value)
    assert "backbone 'fragile' (from acme-boom 1.0) failed while being built" in message
    assert "ValueError: cannot read the weights file" in message
    assert "plugin.py:" in message
    assert isinstance(caught.value.__cause__, ValueError)


def test_an_error_in_a_plugins_forward_names_the_plugin_in_transfer(
    acme: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    lines = ["a,b,c,label"] + [
        ",".join(f"{v:.3f}" for v in rng.normal(size=3)) + f",c{i % 2}" for i in range(40)
    ]
    data = tmp_path / "train.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PluginError) as caught:
        lp.transfer(
            domain="tabular",
            data=str(data),
            backbone="boom",
            backbone_options={"num_features": 3, "hidden": [4]},
            train={"epochs": 1, "progress": False},
            bootstrap=0,
            save=False,
        )
    message = str(caught.value)
    assert "in the code of plugin 'acme' (distribution acme-boom 1.0)" in message
    assert "backbone.py:" in message and "the boom backbone always fails" in message
    assert isinstance(caught.value.__cause__, RuntimeError)
