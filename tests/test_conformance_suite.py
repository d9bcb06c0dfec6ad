"""The conformance suite itself: run by pytest in a subprocess on a plugin that breaks the
backbone and task contracts, it fails exactly the checks that should fail, naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

SLOPPY_PLUGIN = '''
import torch
from torch import nn

from lepton_platform import BackboneSpec, MetricSpec, TaskSpec, hookimpl
from lepton_platform.models import Backbone, LayerGroup
from lepton_platform.tasks import ClassificationTask


class Leaky(Backbone):
    """Two layers, but only the first is in a layer group and config() forgets the width."""

    def __init__(self, width=3):
        super().__init__()
        self.width = width
        self.first = nn.Linear(2, width)
        self.second = nn.Linear(width, width)
        self.feature_dim = width

    def forward(self, **inputs):
        return self.second(self.first(inputs["x"]))

    def layer_groups(self):
        return [LayerGroup("first", (self.first,))]

    def preprocessor(self):
        raise NotImplementedError

    def config(self):
        return {}

    def example_batch(self, batch_size=2):
        return {"x": torch.randn(batch_size, 2)}


class Flat(ClassificationTask):
    """A loss that ignores the logits."""

    def loss(self, logits, labels):
        return logits.sum() * 0.0 + 1.0


@hookimpl
def lepton_backbones():
    return [BackboneSpec(name="leaky", domain="nowhere", description="leaks",
                         factory=lambda pretrained=None, **o: Leaky(**o),
                         tiny_options={"width": 4})]


@hookimpl
def lepton_tasks():
    return [TaskSpec(name="flat", factory=lambda label_names, **o: Flat(label_names, **o))]


class Errors:
    """Counts wrong predictions: lower is better, but its spec below says otherwise."""

    def compute(self, predictions, references):
        return {"errors": sum(p != r for p, r in zip(predictions, references))}


@hookimpl
def lepton_metrics():
    return [
        MetricSpec(name="errors", factory=Errors, description="wrong predictions",
                   higher_is_better=True),
        MetricSpec(name="wrong-key", factory=Errors, description="its headline key is absent",
                   higher_is_better=False),
    ]
'''

TEST_MODULE = """
import sloppy_plugin
from lepton_platform.testing import PluginConformance


class TestSloppy(PluginConformance):
    plugin = sloppy_plugin
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder: Path = tmp_path_factory.mktemp("sloppy")
    (folder / "sloppy_plugin.py").write_text(SLOPPY_PLUGIN, encoding="utf-8")
    (folder / "test_sloppy.py").write_text(TEST_MODULE, encoding="utf-8")
    report = folder / "report.xml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "test_sloppy.py",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.is_file(), result.stdout + result.stderr
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        verdict = "PASSED"
        for word in ("failure", "error", "skipped"):
            found = case.find(word)
            if found is not None:
                verdict = f"{word.upper()} {found.get('message', '')} {found.text or ''}"
        outcomes[case.get("name", "")] = verdict
    return outcomes


def test_layer_groups_missing_a_parameter_fail(outcome: dict[str, str]) -> None:
    assert outcome["test_backbone_layer_groups[leaky]"].startswith("FAILURE")
    assert (
        "parameters in no layer group: ['second.weight', 'second.bias']"
        in (outcome["test_backbone_layer_groups[leaky]"])
    )


def test_a_config_that_does_not_rebuild_fails(outcome: dict[str, str]) -> None:
    assert outcome["test_backbone_config_rebuilds[leaky]"].startswith("FAILURE")


def test_a_loss_ignoring_the_features_fails(outcome: dict[str, str]) -> None:
    assert outcome["test_task_head_loss_predict[flat]"].startswith("FAILURE")
    assert "does not depend on the features" in outcome["test_task_head_loss_predict[flat]"]


def test_a_missing_description_fails_the_metadata_check(outcome: dict[str, str]) -> None:
    assert outcome["test_spec_metadata[task:flat]"].startswith("FAILURE")
    assert outcome["test_spec_metadata[backbone:leaky]"] == "PASSED"


def test_the_sound_checks_pass(outcome: dict[str, str]) -> None:
    assert outcome["test_backbone_forward_backward[leaky]"] == "PASSED"
    assert outcome["test_plugin_loads"] == "PASSED"
    assert outcome["test_metric_compute[errors]"] == "PASSED"
    assert not any("domain_spec" in k for k in outcome)  # deselected: it provides no domain


def test_a_backbone_of_an_unregistered_domain_fails(outcome: dict[str, str]) -> None:
    for check in ("test_backbone_preprocessing", "test_backbone_artifact_round_trip"):
        verdict = outcome[f"{check}[leaky]"]
        assert verdict.startswith("FAILURE") and "the domain 'nowhere'" in verdict, verdict


def test_undeclared_options_fail(outcome: dict[str, str]) -> None:
    verdict = outcome["test_backbone_options_are_checked[leaky]"]
    assert verdict.startswith("FAILURE") and "declare them" in verdict, verdict


def test_a_heavy_import_at_module_level_fails(outcome: dict[str, str]) -> None:
    verdict = outcome["test_plugin_import_is_light"]
    assert verdict.startswith("FAILURE") and "imports ['torch']" in verdict, verdict


def test_a_wrong_headline_key_and_a_wrong_direction_fail(outcome: dict[str, str]) -> None:
    key = outcome["test_metric_headline_and_direction[wrong-key]"]
    assert key.startswith("FAILURE") and "not its headline key 'wrong_key'" in key, key
    direction = outcome["test_metric_headline_and_direction[errors]"]
    assert direction.startswith("FAILURE") and "says higher is better" in direction, direction
