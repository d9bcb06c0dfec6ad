"""Broken plugins, as real installed distributions: each is reported with its distribution name
and what to fix, the others load, and strict mode makes it an error."""

from __future__ import annotations

import pytest

from lepton_platform import PluginError, PluginHost
from lepton_platform.testing import FakeSite

GOOD = """
from lepton_platform import DomainSpec, TaskSpec, hookimpl

def _factory(**options):
    raise RuntimeError("never called while listing")

@hookimpl
def lepton_domains():
    return [DomainSpec(name="fake-good-domain", factory=_factory, description="fine")]

@hookimpl
def lepton_tasks():
    return [TaskSpec(name="fake-good-task", factory=_factory, description="fine")]
"""

BROKEN: dict[str, tuple[str, str]] = {
    # distribution: (module source, the message it must give)
    "fake-empty-name": (
        """
        from lepton_platform import DomainSpec, hookimpl

        @hookimpl
        def lepton_domains():
            return [DomainSpec(name="", factory=dict)]
        """,
        "hook lepton_domains: domain spec has an empty or non-string name ('')",
    ),
    "fake-malformed-name": (
        """
        from lepton_platform import BackboneSpec, hookimpl

        @hookimpl
        def lepton_backbones():
            return [BackboneSpec(name="My Backbone!", domain="image", factory=dict)]
        """,
        "backbone name 'My Backbone!' is malformed: use 1-64 lowercase letters",
    ),
    "fake-not-callable": (
        """
        from lepton_platform import TaskSpec, hookimpl

        @hookimpl
        def lepton_tasks():
            return [TaskSpec(name="uncallable", factory=42)]
        """,
        "task 'uncallable': factory must be callable, got int",
    ),
    "fake-wrong-type": (
        """
        from lepton_platform import hookimpl

        @hookimpl
        def lepton_metrics():
            return {"name": "accuracy"}
        """,
        "hook lepton_metrics must return a list of MetricSpec, got dict",
    ),
    "fake-wrong-spec": (
        """
        from lepton_platform import DomainSpec, hookimpl

        @hookimpl
        def lepton_tasks():
            return [DomainSpec(name="not-a-task", factory=dict)]
        """,
        "hook lepton_tasks returned DomainSpec",
    ),
    "fake-import-raises": (
        """
        raise RuntimeError("cannot find libfoo.so")
        """,
        "RuntimeError: cannot find libfoo.so",
    ),
    "fake-misspelled": (
        """
        from lepton_platform import hookimpl

        @hookimpl
        def lepton_backbone():
            return []
        """,
        "implements unknown hook 'lepton_backbone'; did you mean 'lepton_backbones'",
    ),
    "fake-hook-arguments": (
        """
        from lepton_platform import hookimpl

        @hookimpl
        def lepton_tasks(host):
            return []
        """,
        "breaks the hook contract: Plugin 'hook-arguments' for hook 'lepton_tasks'",
    ),
    "fake-generator": (
        """
        from lepton_platform import TaskSpec, hookimpl

        @hookimpl
        def lepton_tasks():
            yield TaskSpec(name="lazy", factory=dict)
        """,
        "hook lepton_tasks must return a list of TaskSpec, got generator",
    ),
    "fake-hook-raises": (
        """
        from lepton_platform import hookimpl

        @hookimpl
        def lepton_domains():
            raise ValueError("config file missing")
        """,
        "hook lepton_domains raised ValueError: config file missing",
    ),
}


def module_of(distribution: str) -> str:
    return distribution.replace("-", "_") + "_mod"


def install_all(site: FakeSite) -> None:
    site.add("fake-good", {"good": "fake_good_mod"}, {"fake_good_mod.py": GOOD})
    for dist, (source, _) in BROKEN.items():
        module = module_of(dist)
        site.add(dist, {dist.removeprefix("fake-"): module}, {f"{module}.py": source})
    site.add("fake-missing-module", {"missing": "fake_no_such_module"})
    for side in ("a", "b"):
        site.add(
            f"fake-clash-{side}",
            {f"clash{side}": f"fake_clash_{side}_mod"},
            {
                f"fake_clash_{side}_mod.py": """
                from lepton_platform import TaskSpec, hookimpl

                @hookimpl
                def lepton_tasks():
                    return [TaskSpec(name="clash", factory=dict, description="mine")]
                """
            },
        )


@pytest.fixture
def host(lepton_fake_site: FakeSite) -> PluginHost:
    install_all(lepton_fake_site)
    return PluginHost(environ={}).load()


def info_of(host: PluginHost, distribution: str):  # type: ignore[no-untyped-def]
    found = [p for p in host.plugins if p.distribution == distribution]
    assert len(found) == 1, [p.distribution for p in host.plugins]
    return found[0]


@pytest.mark.parametrize("distribution", sorted(BROKEN))
def test_each_broken_plugin_is_reported_with_the_reason(
    host: PluginHost, distribution: str
) -> None:
    info = info_of(host, distribution)
    assert info.status in ("broken", "error")
    assert not any(info.provides.values())
    expected = BROKEN[distribution][1]
    assert any(expected in e for e in info.errors), info.errors


def test_import_errors_are_broken_and_name_the_module(host: PluginHost) -> None:
    raises = info_of(host, "fake-import-raises")
    assert raises.status == "broken"
    assert "importing 'fake_import_raises_mod' failed" in raises.errors[0]
    assert "fake_import_raises_mod.py:2" in raises.errors[0]  # where it raised
    missing = info_of(host, "fake-missing-module")
    assert missing.status == "broken"
    assert "No module named 'fake_no_such_module'" in missing.errors[0]
    assert "fix the entry point" in missing.errors[0]


def test_a_name_clash_names_both_providers_and_is_refused_until_one_is_chosen(
    host: PluginHost,
) -> None:
    with pytest.raises(PluginError, match=r"task 'clash' is provided by both fake-clash-a 1\.0"):
        host.get("task", "clash")
    for side in ("a", "b"):
        info = info_of(host, f"fake-clash-{side}")
        assert info.status == "error" and not info.provides
        (error,) = info.errors
        assert "task 'clash' is provided by both fake-clash-a 1.0 and fake-clash-b 1.0" in error
        assert "LEPTON_PREFER=fake-clash-a or LEPTON_PREFER=fake-clash-b" in error
    chosen = PluginHost(environ={"LEPTON_PREFER": "fake-clash-b"}).load()
    kept = chosen.get("task", "clash")
    assert kept.provider is not None and kept.provider.distribution == "fake-clash-b"
    assert info_of(chosen, "fake-clash-a").status == "ok"
    assert info_of(chosen, "fake-clash-b").provides == {"task": ["clash"]}


def test_the_rest_load(host: PluginHost) -> None:
    good = info_of(host, "fake-good")
    assert good.status == "ok"
    assert good.provides == {"domain": ["fake-good-domain"], "task": ["fake-good-task"]}
    assert good.version == "1.0" and good.module == "fake_good_mod"
    assert host.get("domain", "fake-good-domain").provider.distribution == "fake-good"  # type: ignore[union-attr]
    tabular = info_of(host, "lepton-tabular")  # the installed example plugin
    assert tabular.status == "ok"
    assert "classification" in host.specs("task")  # and the built-ins


def test_a_misspelled_hook_leaves_nothing_pending(host: PluginHost) -> None:
    host.check_pending()  # the misspelled plugin was unregistered and reported instead


def test_strict_mode_raises_naming_the_distribution(lepton_fake_site: FakeSite) -> None:
    install_all(lepton_fake_site)
    strict = PluginHost(environ={"LEPTON_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match=r"plugin 'fake-"):
        strict.load()
    with pytest.raises(PluginError, match=r"plugin 'fake-"):  # again: not left half-loaded
        strict.load()
    only_good = PluginHost(environ={"LEPTON_STRICT_PLUGINS": "1", "LEPTON_PLUGINS": "fake-good"})
    assert "fake-good-task" in only_good.load().specs("task")


@pytest.mark.parametrize(
    "distribution", ["fake-not-callable", "fake-clash-b", "fake-import-raises"]
)
def test_strict_errors_name_the_culprit(lepton_fake_site: FakeSite, distribution: str) -> None:
    install_all(lepton_fake_site)
    keep = {distribution, "fake-clash-a"} if distribution == "fake-clash-b" else {distribution}
    host = PluginHost(environ={"LEPTON_PLUGINS": ",".join(keep)}, strict=True)
    with pytest.raises(PluginError, match=f"plugin '{distribution}'"):
        host.load()


def test_two_entry_points_naming_one_module(lepton_fake_site: FakeSite) -> None:
    lepton_fake_site.add(
        "fake-twice",
        {"one": "fake_twice_mod", "two": "fake_twice_mod"},
        {"fake_twice_mod.py": GOOD.replace("fake-good", "fake-twice")},
    )
    host = PluginHost(environ={"LEPTON_PLUGINS": "fake-twice"})
    status = {p.name: (p.status, p.errors) for p in host.plugins if p.distribution == "fake-twice"}
    assert status["one"] == ("ok", [])
    assert status["two"] == (
        "broken",
        [
            "'fake_twice_mod' is already registered as plugin 'one'; remove the second entry "
            "point (or registration) that names the same module"
        ],
    )
    assert "fake-twice-task" in host.specs("task")
