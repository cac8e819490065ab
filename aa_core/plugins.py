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

import difflib
import importlib.metadata as md
import importlib.util
import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cache

import pluggy

from aa_core import hookspecs
from aa_core.errors import AAError
from aa_core.kinds import KINDS

logger = logging.getLogger("aa")

HOOKS_GROUP = "aa.plugins"
BUILTIN = frozenset({"adapt-anything", "aa-prompters", "aa-generators", "aa-diffusers", "aa-glide", "aa-uda", "aa-ssl", "aa-llm", "aa-vlm"})

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
        self.pm.check_pending()  # each module was checked before it was registered: this cannot fail

    def _load_hooks(self, info: PluginInfo) -> None:
        reason = disabled_reason(info.distribution)
        if reason:
            info.status, info.reason = "disabled", reason
            return
        registered = []
        try:
            for ep in info.entry_points:
                if ep.group == HOOKS_GROUP:
                    module = ep.load()
                    check_hooks(module, info.distribution, ep)
                    registered.append(self.pm.register(module, name=f"{info.distribution}:{ep.name}"))
                    info.hooks += [impl.name for impl in self.pm.get_hookcallers(module) or []]
                elif importlib.util.find_spec(ep.module) is None:  # found, not imported
                    raise ModuleNotFoundError(f"No module named {ep.module!r}")
        except Exception as exc:
            for name in registered:  # a distribution fails whole: none of its hooks is called
                self.pm.unregister(name=name)
            info.hooks = []
            if self.strict:
                raise
            shown = str(exc) if isinstance(exc, pluggy.PluginValidationError) else f"{type(exc).__name__}: {exc}"
            info.status, info.reason = "failed", shown
            logger.warning("plugin %s failed to load: %s (see `aa plugins`)", info.distribution, info.reason)

    @property
    def hook(self):
        return self.pm.hook

    def register_commands(self, app) -> None:
        """Call every plugin's ``aa_register_commands``, one at a time: one that raises is that
        plugin's failure (shown in ``aa plugins``), not every command's, unless strict."""
        for impl in self.pm.hook.aa_register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:
                if self.strict:
                    raise
                self.pm.unregister(name=impl.plugin_name)  # none of its hooks is called from now on
                info = self.plugins.get(canonical(impl.plugin_name.split(":")[0]))
                if info is not None:
                    info.hooks = []
                    info.status, info.reason = "failed", f"aa_register_commands raised {type(exc).__name__}: {exc}"
                logger.warning("plugin %s failed to add its commands: %s: %s", impl.plugin_name.split(":")[0], type(exc).__name__, exc)

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
            raise AAError(self._unavailable(kind, name, available))
        if len(available[name]) > 1:
            raise AAError(next(m for m in self.collisions() if f"{kind} '{name}'" in m))
        owner = canonical(available[name][0])
        group = KINDS[kind].group
        owned = {ep.value for ep in self.plugins[owner].entry_points if ep.group == group}

        def failed(_manager, ep, err):
            if ep.value in owned:  # a same-named entry point of a disabled plugin may fail: ignore it
                raise AAError(entry_point_failure(kind, self.plugins[owner].distribution, ep, err)) from err

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

    def _unavailable(self, kind: str, name: str, available: dict[str, list[str]]) -> str:
        """Why ``name`` cannot be loaded: registered by a plugin that failed or is disabled, or unknown."""
        for info in self.plugins.values():
            if name in info.names.get(kind, []) and info.status != "loaded":
                if info.status == "disabled":
                    return f"{kind} '{name}' is registered by {info.distribution}, {info.reason}; turn it back on, or pick another {kind}"
                return (
                    f"{kind} '{name}' is registered by {info.distribution}, which failed to load ({info.reason}); "
                    f"fix or reinstall {info.distribution} (`aa plugins` lists every plugin's state), or pick another {kind}"
                )
        choices = ", ".join(sorted(available)) or "none installed"
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f"Did you mean '{close[0]}'? " if close else ""
        return f"unknown {kind} '{name}'. {hint}Choose one of: {choices}"

    def distribution_of(self, kind: str, name: str) -> PluginInfo | None:
        dists = self.available(kind).get(name)
        return self.plugins[canonical(dists[0])] if dists else None


def entry_point_failure(kind: str, distribution: str, ep: md.EntryPoint, err: BaseException) -> str:
    """One line saying which entry point of which distribution failed to load, and the fix."""
    where = f"{kind} '{ep.name}' of {distribution} (entry point {ep.value!r} in {ep.group})"
    module_name, _, attr = ep.value.partition(":")
    module_name = module_name.strip()
    if isinstance(err, ModuleNotFoundError) and err.name and not module_name.startswith(err.name):
        return f"{where} needs the module '{err.name}', which is not installed; install it into this environment, or pick another {kind}"
    if isinstance(err, ModuleNotFoundError):
        return f"{where}: no module '{module_name}' is installed; reinstall {distribution}, or pick another {kind}"
    module = sys.modules.get(module_name)
    if isinstance(err, AttributeError) and module is not None and attr and not hasattr(module, attr.strip().split(".")[0]):
        return (
            f"{where}: {module_name} defines no '{attr.strip()}'; fix the class name of the entry point in "
            f"{distribution}'s pyproject.toml and reinstall it"
        )
    return f"{where} failed to import: {type(err).__name__}: {err}; fix {distribution}, or pick another {kind}"


def hook_names() -> list[str]:
    """The hooks ``aa_core.hookspecs`` specifies."""
    return sorted(name for name in vars(hookspecs) if name.startswith("aa_"))


def check_hooks(module, distribution: str, ep: md.EntryPoint) -> None:
    """Refuse a hook module that implements a hook no spec names, or with arguments its spec lacks;
    warn of an ``aa_*`` function that is not marked ``@hookimpl`` (pluggy would ignore it).

    pluggy checks these only once every plugin is registered (``check_pending``), which would make
    one plugin's typo every command's failure; checked here, before registering, it is that plugin's.
    """
    known = hook_names()
    for attr, value in sorted(vars(module).items()):
        if not attr.startswith("aa_") or not callable(value):
            continue
        marked = getattr(value, "aa_impl", None) is not None  # what HookimplMarker("aa") sets
        spec = getattr(hookspecs, attr, None) if attr in known else None
        if not marked:
            if inspect.isfunction(value):
                logger.warning(
                    "plugin %s: %s in %s is not marked @hookimpl, so it is never called; decorate it with "
                    "`@hookimpl` from aa_core.api", distribution, attr, ep.value,
                )  # fmt: skip
            continue
        if spec is None:
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the hooks are {', '.join(known)}"
            raise pluggy.PluginValidationError(module, f"unknown hook {attr} in {distribution}{hint}")
        allowed = set(inspect.signature(spec).parameters)
        extra = [p for p in inspect.signature(value).parameters if p not in allowed]
        if extra:
            raise pluggy.PluginValidationError(
                module,
                f"hook {attr} in {distribution} takes {', '.join(extra)}, which {attr} does not pass; "
                f"its arguments are {', '.join(allowed)} (any of them, by name)",
            )


@cache
def plugin_manager() -> PluginManager:
    """The process-wide plugin manager (environment variables are read on first use)."""
    return PluginManager()
