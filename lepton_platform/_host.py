"""The plugin host: discovers plugins through entry points, validates what they register, and
keeps the registry of specs. This is the only module that calls pluggy's untyped hook API.

Loading is lazy and happens once per host. Environment switches:

- ``LEPTON_PLUGINS=a,b``: load only these distributions (empty: none but the built-ins);
- ``LEPTON_DISABLE_PLUGINS=a,b``: skip these distributions;
- ``LEPTON_PREFER=a,backbone:resnet18=b``: which distribution provides a name that several
  provide (without a choice, such a name is refused, naming every provider);
- ``LEPTON_STRICT_PLUGINS=1``: a broken plugin is an error instead of a report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata as md
import io
import os
import re
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from lepton_platform import hookspecs
from lepton_platform.errors import PluginError, UnknownNameError, did_you_mean
from lepton_platform.specs import KINDS, SPEC_TYPES, Provider, Spec

CORE_DISTRIBUTION = "lepton-platform"
#: Libraries a plugin must not import at module level (listing plugins stays light).
HEAVY_MODULES = frozenset(
    {"torch", "transformers", "torchvision", "torchaudio", "datasets", "tensorflow", "jax", "timm"}
)
#: A plugin import slower than this many seconds is reported.
SLOW_IMPORT_S = 1.0
ENTRY_POINT_GROUP = hookspecs.PROJECT

Status = Literal["ok", "error", "broken"]


def canonical(name: str) -> str:
    """Distribution names compare as PyPI does: case, '-', '_' and '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names_from_env(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {canonical(part.strip()) for part in value.split(",") if part.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Preference:
    """Which distribution provides a name that several provide: ``general`` holds
    distributions (or entry-point names) in order of preference, ``targeted`` maps
    ``kind:name`` or ``name`` to one of them.

    ``Preference.parse("lepton-image, backbone:resnet18=acme-zoo")`` reads the form of
    ``LEPTON_PREFER``."""

    general: tuple[str, ...] = ()
    targeted: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | Sequence[str] | None) -> Preference:
        if value is None:
            return cls()
        parts = value.split(",") if isinstance(value, str) else list(value)
        general: list[str] = []
        targeted: dict[str, str] = {}
        for part in (str(p).strip() for p in parts):
            if not part:
                continue
            key, sep, dist = part.partition("=")
            if sep:
                if not key.strip() or not dist.strip():
                    raise PluginError(
                        f"LEPTON_PREFER entry {part!r} is malformed: write a distribution "
                        "(lepton-image) or NAME=DISTRIBUTION (backbone:resnet18=lepton-image)"
                    )
                targeted[key.strip()] = canonical(dist.strip())
            else:
                general.append(canonical(part))
        return cls(tuple(general), targeted)

    def choose(self, kind: str, name: str, offers: Sequence[PluginInfo]) -> PluginInfo | None:
        """The provider chosen among ``offers`` for ``kind`` ``name`` (``None``: no choice)."""

        def matching(wanted: str) -> PluginInfo | None:
            for info in offers:
                if wanted in (canonical(info.distribution), canonical(info.name)):
                    return info
            return None

        for key in (f"{kind}:{name}", name):
            if key in self.targeted:
                chosen = matching(self.targeted[key])
                if chosen is not None:
                    return chosen
        for wanted in self.general:
            chosen = matching(wanted)
            if chosen is not None:
                return chosen
        return None


@dataclass
class PluginInfo:
    """What the host knows of one plugin: where it came from, what it provides, what went wrong.

    ``status`` is ``ok``; ``error`` when some of its specs were refused (the rest loaded); or
    ``broken`` when nothing of it loaded (import failed, hook contract broken).
    """

    name: str
    distribution: str
    version: str | None
    module: str | None = None
    builtin: bool = False
    provides: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    broken: bool = False
    #: What loads but costs every command (heavy imports, a slow import, output on stdout).
    warnings: list[str] = field(default_factory=list)
    import_seconds: float = 0.0
    #: Names it provides that another provider was chosen for (``LEPTON_PREFER``).
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.broken:
            return "broken"
        return "error" if self.errors else "ok"

    @property
    def provider(self) -> Provider:
        return Provider(distribution=self.distribution, version=self.version, plugin=self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "provides": {k: v for k, v in self.provides.items() if v},
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "import_seconds": round(self.import_seconds, 3),
        }


class PluginHost:
    """A plugin manager plus the registry built from what its plugins return.

    The host knows no plugin of its own: the core's built-ins come through the core
    distribution's entry point like any other plugin. ``discover=False`` makes an isolated host
    that loads no entry point at all (the testing kit's fixture registers the built-ins on it).

    A name that two distributions provide is refused (``get`` raises a :class:`PluginError`
    naming both) unless ``prefer`` (default: ``LEPTON_PREFER``) chooses one of them; nothing
    is kept by the order in which plugins happen to load.
    """

    def __init__(
        self,
        *,
        discover: bool = True,
        environ: Mapping[str, str] | None = None,
        strict: bool | None = None,
        prefer: str | Sequence[str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.discover = discover
        self.only = _names_from_env(env.get("LEPTON_PLUGINS"))
        self.disabled = _names_from_env(env.get("LEPTON_DISABLE_PLUGINS")) or set()
        self.strict = _truthy(env.get("LEPTON_STRICT_PLUGINS")) if strict is None else strict
        self.preference = Preference.parse(env.get("LEPTON_PREFER") if prefer is None else prefer)
        self._clashes: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._objects: dict[str, object] = {}
        self._specs: dict[str, dict[str, Spec]] = {kind: {} for kind in KINDS}
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> PluginHost:
        """Load every enabled entry point, once (the core distribution's own first: it
        registers the built-in tasks, strategies and metrics like any plugin). Returns ``self``.
        """
        with self._lock:
            if self._loaded:
                return self
            try:
                if self.discover:
                    self._discover()
                self._collect()
            except BaseException:
                # Strict mode (or an interrupt) stopped the load half-way: start clean, so the
                # next call loads again and fails the same way instead of half-loaded.
                self._reset()
                raise
            self._loaded = True
        return self

    def _reset(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins = {}
        self._objects = {}
        self._specs = {kind: {} for kind in KINDS}
        self._clashes = {kind: {} for kind in KINDS}

    def prefer(self, preference: str | Sequence[str]) -> None:
        """Choose which distribution provides a name that several provide, as
        ``LEPTON_PREFER`` does (a config's choice, say): ``"lepton-image"``,
        ``["backbone:resnet18=lepton-image"]``. The registry is rebuilt at once."""
        with self._lock:
            self.preference = Preference.parse(preference)
            if self._loaded:
                self._collect()

    def _discover(self) -> None:
        eps = sorted(
            md.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (
                canonical(ep.dist.name) != CORE_DISTRIBUTION if ep.dist else True,
                canonical(ep.dist.name) if ep.dist else "",
                ep.name,
            ),
        )
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else ep.name
            version = ep.dist.version if ep.dist is not None else None
            key = canonical(dist)
            core = key == CORE_DISTRIBUTION
            if not core:  # the switches choose among the other distributions
                ep_key = canonical(ep.name)
                if self.only is not None and key not in self.only and ep_key not in self.only:
                    continue
                if key in self.disabled or ep_key in self.disabled:
                    continue
            if core:
                name = dist if dist not in self._plugins else f"{dist}:{ep.name}"
            else:
                name = ep.name if ep.name not in self._plugins else f"{dist}:{ep.name}"
            info = PluginInfo(name, dist, version, module=ep.value, builtin=core)
            try:
                obj = self._import(ep, info)
            except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end lepton
                reason = f"importing {ep.value!r} failed: {_describe(exc)}"
                module = ep.value.split(":")[0].strip()
                if (
                    isinstance(exc, ModuleNotFoundError)
                    and exc.name
                    and (module == exc.name or module.startswith(exc.name + "."))
                ):
                    reason += (
                        f"; the entry point '{ep.name} = {ep.value}' names a module that is not "
                        f"installed: fix the entry point in {dist}'s pyproject.toml, or "
                        "reinstall it"
                    )
                self._fail(info, reason)
                continue
            if info.warnings and self.strict:
                raise PluginError(f"plugin {info.distribution!r} ({info.name}): {info.warnings[0]}")
            self._add(obj, info)

    def _import(self, ep: md.EntryPoint, info: PluginInfo) -> object:
        """Import an entry point's module, timing it, keeping what it prints off stdout, and
        noting heavy libraries it imports (every ``lepton`` command pays for them)."""
        import sys
        import time

        before = {m.split(".")[0] for m in sys.modules}
        printed = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            obj = ep.load()
        info.import_seconds = time.perf_counter() - started
        heavy = sorted(
            {m for m in {n.split(".")[0] for n in sys.modules} - before if m in HEAVY_MODULES}
            | {
                v.__name__.split(".")[0]
                for v in vars(obj).values()
                if isinstance(v, type(sys)) and v.__name__.split(".")[0] in HEAVY_MODULES
            }
        )
        if heavy:
            info.warnings.append(
                f"imports {', '.join(heavy)} when it is loaded ({info.import_seconds:.1f} s): "
                "every lepton command, `lepton plugins` included, pays for it; import heavy "
                "libraries inside the spec factories instead"
            )
        elif info.import_seconds > SLOW_IMPORT_S:
            info.warnings.append(
                f"takes {info.import_seconds:.1f} s to import, which every lepton command pays"
            )
        if printed.getvalue():
            info.warnings.append(
                f"printed {len(printed.getvalue())} characters to stdout when it was loaded "
                "(kept off stdout, so that --json output stays clean)"
            )
        return obj

    def _add(self, obj: object, info: PluginInfo) -> None:
        already = self._pm.get_name(obj)
        if already is not None:
            self._fail(
                info,
                f"{info.module or obj!r} is already registered as plugin {already!r}; remove the "
                "second entry point (or registration) that names the same module",
            )
            return
        try:
            self._pm.register(obj, name=info.name)
        except pluggy.PluginValidationError as exc:  # a hook whose arguments are not the spec's
            message = " ".join(str(exc).split())
            self._fail(info, f"breaks the hook contract: {message}")
            return
        except Exception as exc:
            self._fail(info, f"could not be registered: {_describe(exc)}")
            return
        unknown = [
            caller.name for caller in self._pm.get_hookcallers(obj) or [] if caller.spec is None
        ]
        if unknown:
            self._pm.unregister(obj)
            hooks = sorted(hookspecs.HOOK_FOR_KIND.values())
            reasons = [f"implements unknown hook {n!r}{did_you_mean(n, hooks)}" for n in unknown]
            self._fail(info, "; ".join(reasons))
            return
        self._plugins[info.name] = info
        self._objects[info.name] = obj

    def _fail(self, info: PluginInfo, reason: str) -> None:
        info.broken = True
        info.errors.append(reason)
        self._plugins[info.name] = info
        if self.strict:
            raise PluginError(f"plugin {info.distribution!r} ({info.name}): {reason}")

    def register(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> PluginInfo:
        """Register a plugin object (a module, a class instance) in this process.

        Its specs join the registry at once; errors are reported like an installed plugin's.
        ``builtin`` marks a plugin of the core distribution (the testing kit registers the
        built-ins this way on a host that discovers nothing)."""
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self._plugins:
                raise PluginError(f"a plugin named {name!r} is already registered")
            info = PluginInfo(name, distribution or name, version, module=name, builtin=builtin)
            self._add(plugin, info)
            self._collect()
            return self._plugins[name]

    def is_registered(self, name: str) -> bool:
        """Whether a plugin of that name is registered (loaded or refused)."""
        return name in self.plugins_by_name()

    def plugins_by_name(self) -> dict[str, PluginInfo]:
        self.load()
        return dict(self._plugins)

    def unregister(self, name: str) -> None:
        """Remove an in-process plugin and its specs."""
        with self._lock:
            obj = self._objects.pop(name, None)
            if obj is not None:
                self._pm.unregister(obj)
            self._plugins.pop(name, None)
            self._collect()

    def check_pending(self) -> None:
        """Raise when a registered plugin implements a hook that no spec declares."""
        self.load()
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc

    # -- collecting specs ----------------------------------------------------------------------

    def _collect(self) -> None:
        specs: dict[str, dict[str, Spec]] = {kind: {} for kind in KINDS}
        clashes: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        problems: list[str] = []
        impls = {
            hook_name: {
                impl.plugin_name: impl.function
                for impl in getattr(self._pm.hook, hook_name).get_hookimpls()
            }
            for hook_name in hookspecs.HOOK_FOR_KIND.values()
        }
        offers: dict[str, dict[str, list[tuple[PluginInfo, Spec]]]] = {k: {} for k in KINDS}
        offered_by: dict[str, list[tuple[str, str]]] = {}  # each plugin's names, in its order
        for info in self._plugins.values():
            if info.broken:
                continue
            info.errors.clear()
            info.notes.clear()
            info.provides = {}
            for kind in KINDS:
                hook_name = hookspecs.HOOK_FOR_KIND[kind]
                impl = impls[hook_name].get(info.name)
                if impl is None:
                    continue
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # --json stays clean
                        returned = impl()
                except Exception as exc:
                    info.errors.append(f"hook {hook_name} raised {_describe(exc)}")
                    continue
                for spec in self._validate(kind, hook_name, returned, info):
                    offered = offers[kind].setdefault(spec.name, [])
                    if any(other is info for other, _ in offered):
                        info.errors.append(
                            f"hook {hook_name} returned two {kind}s named {spec.name!r}; the "
                            "first is used"
                        )
                        continue
                    offered.append((info, spec))
                    offered_by.setdefault(info.name, []).append((kind, spec.name))
        chosen: dict[tuple[str, str], PluginInfo] = {}
        for kind, by_name in offers.items():
            for name, offered in by_name.items():
                providers = [info for info, _ in offered]
                winner = providers[0] if len(providers) == 1 else None
                if winner is None:
                    winner = self.preference.choose(kind, name, providers)
                    if winner is None:
                        message = _clash_message(kind, name, providers)
                        clashes[kind][name] = message
                        for info in providers:
                            info.errors.append(message)
                        continue
                    for info in providers:
                        if info is not winner:
                            info.notes.append(
                                f"{kind} {name!r} is also provided by {winner.provider}, which "
                                "LEPTON_PREFER chose; this plugin's is not used"
                            )
                spec = next(spec for info, spec in offered if info is winner)
                specs[kind][name] = dataclasses.replace(spec, provider=winner.provider)
                chosen[(kind, name)] = winner
        for info in self._plugins.values():
            if info.broken:
                continue
            for kind, name in offered_by.get(info.name, []):
                if chosen.get((kind, name)) is info:
                    info.provides.setdefault(kind, []).append(name)
            problems.extend(f"plugin {info.distribution!r}: {e}" for e in info.errors)
        self._specs = specs
        self._clashes = clashes
        if problems and self.strict:
            raise PluginError("; ".join(problems))

    def _validate(
        self, kind: str, hook_name: str, returned: object, info: PluginInfo
    ) -> list[Spec]:
        expected = SPEC_TYPES[kind]
        if returned is None:
            return []
        if not isinstance(returned, Sequence) or isinstance(returned, str | bytes):
            info.errors.append(
                f"hook {hook_name} must return a list of {expected.__name__}, "
                f"got {type(returned).__name__}"
            )
            return []
        good: list[Spec] = []
        for item in returned:
            if not isinstance(item, expected):
                info.errors.append(
                    f"hook {hook_name} returned {type(item).__name__} ({item!r:.80}); "
                    f"expected {expected.__name__}"
                )
                continue
            issues = item.problems()
            if issues:
                info.errors.extend(f"hook {hook_name}: {issue}" for issue in issues)
                continue
            good.append(item)
        return good

    # -- queries -------------------------------------------------------------------------------

    def plugin_of_file(self, filename: str) -> PluginInfo | None:
        """The plugin whose package holds ``filename`` (the innermost when packages nest)."""
        self.load()
        path = os.path.abspath(filename)
        best: tuple[int, PluginInfo] | None = None
        for name, obj in self._objects.items():
            root = _package_root(obj)
            if root and path.startswith(root + os.sep) and (best is None or len(root) > best[0]):
                best = (len(root), self._plugins[name])
        return None if best is None else best[1]

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin the host tried to load, built-ins first, broken ones included."""
        self.load()
        return list(self._plugins.values())

    def specs(self, kind: str) -> dict[str, Spec]:
        self.load()
        if kind not in self._specs:
            raise UnknownNameError(f"unknown spec kind {kind!r}{did_you_mean(kind, KINDS)}")
        return dict(self._specs[kind])

    def get(self, kind: str, name: str) -> Spec:
        """The spec of ``kind`` registered as ``name``; a name that several distributions
        provide, none of them chosen, is a :class:`PluginError` naming them."""
        specs = self.specs(kind)
        try:
            return specs[name]
        except KeyError:
            clash = self._clashes.get(kind, {}).get(name)
            if clash is not None:
                raise PluginError(clash) from None
            hint = did_you_mean(name, specs)
            raise UnknownNameError(f"{kind} {name!r} is not registered{hint}") from None

    def list(self, kind: str, pattern: str | None = None, **filters: Any) -> list[Spec]:
        specs = self.specs(kind)
        return [specs[n] for n in sorted(specs) if specs[n].matches(pattern, **filters)]


def _clash_message(kind: str, name: str, providers: Sequence[PluginInfo]) -> str:
    """The error of a name several distributions provide, saying how to choose."""
    names = [str(info.provider) for info in providers]
    both = " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + " and " + names[-1]
    dists = [canonical(info.distribution) for info in providers]
    alternatives = " or ".join(f"LEPTON_PREFER={d}" for d in dists)
    return (
        f"{kind} {name!r} is provided by both {both}; it is not used until you choose one: "
        f"set {alternatives} (or {kind}:{name}=DISTRIBUTION for this name alone), or disable "
        "a plugin with LEPTON_DISABLE_PLUGINS"
    )


_MACHINERY = (
    os.path.dirname(pluggy.__file__) + os.sep,
    os.path.dirname(md.__file__) + os.sep,
    os.path.dirname(os.path.dirname(md.__file__)) + os.sep + "importlib" + os.sep,
)


def _describe(exc: BaseException) -> str:
    """``Type: message (at file.py:line)``, the place being the last frame in the plugin's own
    code (not in importlib or pluggy), when there is one."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<frozen")
        and not f.filename.startswith(_MACHINERY)
        and os.path.abspath(f.filename) != os.path.abspath(__file__)
    ]
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno})"
    return text


def _package_root(obj: object) -> str | None:
    """The folder of the top-level package a plugin object comes from."""
    import sys
    import types

    module_name = obj.__name__ if isinstance(obj, types.ModuleType) else type(obj).__module__
    top = sys.modules.get(module_name.split(".")[0])
    file = getattr(top, "__file__", None)
    if not isinstance(file, str):
        return None
    return os.path.dirname(os.path.abspath(file))


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
    return _host.load()


def set_host(host: PluginHost | None) -> PluginHost | None:
    """Replace the process-wide host (``None``: rediscover on next use); returns the old one."""
    global _host
    with _host_lock:
        old, _host = _host, host
    return old
