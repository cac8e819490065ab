"""Finding, listing, disabling and loading plugins.

Two mechanisms, two roles:

* named implementations, one entry-point group per kind (``aa_core.kinds``), loaded with
  stevedore's ``DriverManager`` so that only the selected entry point is ever imported;
* cross-cutting hooks (``aa_core.hookspecs``) in the ``aa.plugins`` group, joined through pluggy.

A plugin is a distribution. ``AA_DISABLE_PLUGINS=dist-a,dist-b`` turns named ones off,
``AA_BUILTIN_PLUGINS_ONLY=1`` turns off every distribution not shipped with Adapt Anything, and
``AA_STRICT_PLUGINS=1`` makes a plugin that fails to load an error instead of a warning.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from functools import cache

import pluggy

from aa_core import hookspecs
from aa_core.errors import AAError
from aa_core.kinds import KINDS

logger = logging.getLogger("aa")

HOOKS_GROUP = "aa.plugins"
BUILTIN = frozenset({"adapt-anything", "aa-prompters", "aa-generators", "aa-diffusers", "aa-glide", "aa-uda", "aa-ssl", "aa-llm"})

DISABLE_ENV = "AA_DISABLE_PLUGINS"
BUILTIN_ONLY_ENV = "AA_BUILTIN_PLUGINS_ONLY"
STRICT_ENV = "AA_STRICT_PLUGINS"


def canonical(name: str) -> str:
    """Distribution names compare like pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class PluginInfo:
    """One installed distribution that registers anything with Adapt Anything."""

    distribution: str
    version: str
    names: dict[str, list[str]] = field(default_factory=dict)  # kind -> registered names
    hooks: list[str] = field(default_factory=list)  # hook implementations it provides
    status: str = "loaded"  # loaded | failed | disabled
    reason: str = ""
    entry_points: list[md.EntryPoint] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return canonical(self.distribution) in BUILTIN

    def as_dict(self) -> dict:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "builtin": self.builtin,
            "names": self.names,
            "hooks": self.hooks,
        }


def disabled_reason(distribution: str) -> str:
    """Why ``distribution`` is disabled by the environment, or "" if it is not."""
    deny = {canonical(n) for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    if canonical(distribution) in deny:
        return f"disabled by {DISABLE_ENV}"
    if _flag(BUILTIN_ONLY_ENV) and canonical(distribution) not in BUILTIN:
        return f"third-party plugin disabled by {BUILTIN_ONLY_ENV}"
    return ""


def _scan() -> dict[str, PluginInfo]:
    """Read every distribution's entry points in our groups; imports nothing."""
    kind_of = {kind.group: name for name, kind in KINDS.items()}
    groups = {*kind_of, HOOKS_GROUP}
    found: dict[str, PluginInfo] = {}
    for dist in md.distributions():
        eps = [ep for ep in dist.entry_points if ep.group in groups]
        if not eps:
            continue
        name = dist.metadata["Name"]
        if canonical(name) in found:  # the same distribution twice on sys.path: first one wins
            continue
        info = PluginInfo(distribution=name, version=dist.version, entry_points=eps)
        for ep in eps:
            if ep.group in kind_of:
                info.names.setdefault(kind_of[ep.group], []).append(ep.name)
        found[canonical(name)] = info
    return found


class PluginManager:
    """Loads hook modules once per process and answers questions about installed plugins."""

    def __init__(self) -> None:
        self.plugins = _scan()
        self.strict = _flag(STRICT_ENV)
        self.pm = pluggy.PluginManager("aa")
        self.pm.add_hookspecs(hookspecs)
        for info in self.plugins.values():
            self._load_hooks(info)
        self.pm.check_pending()

    def _load_hooks(self, info: PluginInfo) -> None:
        reason = disabled_reason(info.distribution)
        if reason:
            info.status, info.reason = "disabled", reason
            return
        try:
            for ep in info.entry_points:
                if ep.group == HOOKS_GROUP:
                    module = ep.load()
                    self.pm.register(module, name=f"{info.distribution}:{ep.name}")
                    info.hooks += [impl.name for impl in self.pm.get_hookcallers(module) or []]
                elif importlib.util.find_spec(ep.module) is None:  # found, not imported
                    raise ModuleNotFoundError(f"No module named {ep.module!r}")
        except Exception as exc:
            if self.strict:
                raise
            info.status, info.reason = "failed", f"{type(exc).__name__}: {exc}"
            logger.warning("plugin %s failed to load: %s (see `aa plugins`)", info.distribution, info.reason)

    @property
    def hook(self):
        return self.pm.hook

    # --- named implementations ---------------------------------------------------------------

    def available(self, kind: str) -> dict[str, list[str]]:
        """Registered name -> distributions providing it, among enabled, loaded plugins."""
        out: dict[str, list[str]] = {}
        for info in self.plugins.values():
            if info.status == "loaded":
                for name in info.names.get(kind, []):
                    out.setdefault(name, []).append(info.distribution)
        return out

    def collisions(self) -> list[str]:
        """One message per name that two enabled distributions register in the same kind."""
        return [
            f"{kind} '{name}' is registered by both {' and '.join(dists)}; "
            f"disable one with {DISABLE_ENV}={dists[-1]}"
            for kind in KINDS
            for name, dists in sorted(self.available(kind).items())
            if len(dists) > 1
        ]

    def load(self, kind: str, name: str) -> type:
        """Import and return the implementation class registered as ``name`` for ``kind``."""
        from stevedore import DriverManager  # imported on selection only

        available = self.available(kind)
        if name not in available:
            choices = ", ".join(sorted(available)) or "none installed"
            raise AAError(f"unknown {kind} '{name}'. Choose one of: {choices}")
        if len(available[name]) > 1:
            raise AAError(next(m for m in self.collisions() if f"{kind} '{name}'" in m))
        owner = canonical(available[name][0])
        group = KINDS[kind].group
        owned = {ep.value for ep in self.plugins[owner].entry_points if ep.group == group}

        def failed(_manager, ep, err):
            if ep.value in owned:  # a same-named entry point of a disabled plugin may fail: ignore it
                raise AAError(
                    f"{kind} '{name}' from {self.plugins[owner].distribution} failed to load: "
                    f"{type(err).__name__}: {err}. Reinstall it, or pick another {kind}"
                ) from err

        def keep_owner(_namespace, _name, extensions):
            return next(ext for ext in extensions if ext.entry_point.value in owned)

        manager = DriverManager(
            namespace=group, name=name, on_load_failure_callback=failed, conflict_resolver=keep_owner
        )
        cls = manager.driver
        contract = KINDS[kind].contract
        if not (isinstance(cls, type) and issubclass(cls, contract)):
            raise AAError(
                f"{kind} '{name}' from {self.plugins[owner].distribution} is not a {contract.__name__} "
                f"(aa_core.api.{contract.__name__}); fix the plugin's entry point or pick another {kind}"
            )
        return cls

    def distribution_of(self, kind: str, name: str) -> PluginInfo | None:
        dists = self.available(kind).get(name)
        return self.plugins[canonical(dists[0])] if dists else None


@cache
def plugin_manager() -> PluginManager:
    """The process-wide plugin manager (environment variables are read on first use)."""
    return PluginManager()
