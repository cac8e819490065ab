"""The documentation's tables stay true: docs/config.md's defaults are the config's and the
plugins' own, docs/architecture.md names every module and hook of the core."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aa_core import hookspecs
from aa_core.config import Config

DOCS = Path(__file__).parent.parent / "docs"
ROOT = Path(__file__).parent.parent


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``header``, as cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def value(text: str):
    """A documented default as Python reads it: `null`, none, `true`, `0.01`, `1e-3`, `[]`, `""`, a word."""
    text = text.strip()
    if text in ("none", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", text):
        return float(text)
    return {"[]": [], '""': ""}.get(text, text)


def documented_defaults() -> dict[str, object]:
    out = {}
    for key_cell, default_cell, _meaning in table((DOCS / "config.md").read_text(), "| key | default |"):
        keys = re.findall(r"`([^`]+)`", key_cell)
        if not keys or "*" in keys[0] or "NAME" in keys[0]:
            continue  # generator.*, filters.NAME: the implementations' own (the next table)
        section = keys[0].split(".")[0]
        keys = [keys[0], *(section + k for k in keys[1:] if k.startswith("."))]
        shown = re.findall(r"`([^`]*)`", default_cell) or [default_cell]
        values = [v.strip() for v in shown[0].split(",")] if len(keys) > 1 and len(shown) == 1 else shown
        if len(keys) > 1 and len(values) == 1:
            values = [v.strip() for v in default_cell.replace("`", "").split(",")]
        for key, text in zip(keys, values):
            # `none` in code is the word an implementation section takes (vlm.name); a bare none is None
            out[key] = "none" if text == "none" and "`none`" in default_cell else value(text)
    return out


def test_the_config_table_holds_every_field_with_its_default():
    defaults = Config().model_dump(mode="json")
    documented = documented_defaults()
    fields = [f"{s}.{k}" if isinstance(v, dict) else s for s, v in defaults.items() for k in (v if isinstance(v, dict) else [None])]
    fields = [f for f in fields if not f.startswith(("filters", "prompts.", "generator.", "uda.", "ssl.")) or f.split(".")[1] in
              Config.model_fields[f.split(".")[0]].annotation.model_fields]  # fmt: skip
    missing = [f for f in fields if f not in documented and f != "filters"]
    assert missing == []
    for key, shown in documented.items():
        section, _, name = key.partition(".")
        actual = defaults[section][name] if name else defaults[section]
        if key == "task.categories":
            assert shown == "['0', ..., '9']" and actual == [str(d) for d in range(10)]
        else:
            assert shown == actual, key


def test_the_implementations_table_gives_their_options_defaults():
    from aa_core.plugins import plugin_manager

    checked = 0
    for name_cell, options_cell in table((DOCS / "config.md").read_text(), "| implementation | options (defaults) |"):
        (name,) = re.findall(r"`([^`]+)`", name_cell)
        kind = next(kind for kind in ("prompter", "generator", "uda", "ssl", "vlm") if name in plugin_manager().available(kind))
        defaults = plugin_manager().load(kind, name).Options().model_dump(mode="json")
        for option, shown in re.findall(r"`(\w+)` \(([^)]*)\)", options_cell):
            first = re.split(r"[,;]| [a-zA-Z]", shown.strip(), maxsplit=1)[0].strip().strip("`")
            if defaults.get(option) is None or not re.fullmatch(r"[-\w.]+", first):
                continue  # a default computed at run time (fixmatch's lr), or prose
            assert option in defaults, f"{name}.{option}"
            expected = value(first)
            if isinstance(defaults[option], float) and isinstance(expected, str) and "/" in expected:
                continue
            assert expected == pytest.approx(defaults[option]) if isinstance(expected, float) else expected == defaults[option], (
                f"{name}.{option}: documented {first}, default {defaults[option]}"
            )
            checked += 1
    assert checked >= 40


def test_the_architecture_page_names_every_module_and_hook_of_the_core():
    text = (DOCS / "architecture.md").read_text()
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "aa_core").rglob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if f"`{m}`" not in text] == []
    hooks = [name for name in vars(hookspecs) if name.startswith("aa_")]
    assert len(hooks) == 7 and [h for h in hooks if f"`{h}`" not in text] == []
