"""The shape of the code: who may import whom, what every module says first, and what start-up costs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CORE = ROOT / "aa_core"
RESULTS = ROOT / "results" / "aa_results"
OWN_CODE = [*CORE.rglob("*.py"), *RESULTS.glob("*.py"), *(ROOT / "cli" / "aa_cli").glob("*.py")]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def room(module: str) -> str:
    """A module's room in the core: its subpackage (``aa_core.data``) or itself (``aa_core.pipeline``)."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_no_stage_module_imports_another():
    stages = {module_name(p) for p in (CORE / "stages").glob("*.py") if p.stem != "__init__"}
    for path in (CORE / "stages").glob("*.py"):
        assert not (imported(path) & (stages - {module_name(path)})), path.name


def test_the_core_imports_form_no_circle():
    """Rooms (subpackages and top-level modules of aa_core) import one another without a cycle: they stack in layers."""
    edges: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        source = room(module_name(path))
        edges.setdefault(source, set())
        edges[source] |= {room(m) for m in imported(path) if m.startswith("aa_core.") and room(m) != source}
    done, on_path = set(), []

    def visit(node: str) -> None:
        assert node not in on_path, " -> ".join([*on_path[on_path.index(node) :], node])
        if node in done:
            return
        on_path.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        on_path.pop()
        done.add(node)

    for node in sorted(edges):
        visit(node)
    assert "aa_core.stages" in edges and "aa_core.runs" in edges  # the walk saw the rooms


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.py")), ids=lambda p: p.name)
def test_the_results_tools_use_only_the_cores_surface_for_tools(path):
    assert {m for m in imported(path) if m.split(".")[0] == "aa_core"} <= {"aa_core.runs"}


@pytest.mark.parametrize("path", OWN_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_opens_with_why_it_exists(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 3, f"{path} opens without a docstring"


def imports_of(*args: str) -> dict:
    """The modules loaded by ``aa ARGS`` when it has finished (its output thrown away)."""
    code = (
        "import sys, atexit, json\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['aa', *{list(args)!r}]\n"
        "from aa_cli.main import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    import json

    return json.loads(proc.stderr.strip().splitlines()[-1])


HEAVY = {"torch", "numpy", "PIL", "timm", "accelerate", "rich", "stevedore", "aa_core.config", "aa_core.contracts"}


@pytest.mark.parametrize("args", [("--help",), ("plugins",), ("run", "--help"), ("sweep", "--help")])
def test_help_and_the_plugin_listing_load_no_heavy_module(args):
    """Start-up stays light (``aa --help`` ~0.1 s): counted in modules, not timed. Typer itself loads
    pydantic to build a command's options, so the count allows for it past ``--help``."""
    modules = imports_of(*args)
    assert not HEAVY & set(modules), HEAVY & set(modules)
    assert len(modules) < (260 if args == ("--help",) else 340), len(modules)


def test_help_texts_render_as_written():
    from conftest import aa

    assert "A YAML file of KEY: [values]." in aa("sweep", "--help", check=0).stdout


def test_stages_json_has_one_writer():
    """Only the pipeline marks stages complete or stale: a stage reports its part done
    (``ctx.part_done``), a sweep shares through ``Run.share_from``."""
    pens = {"mark_complete", "mark_stale"}
    callers = set()
    for path in [*OWN_CODE, *(ROOT / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in pens:
                callers.add(path.relative_to(ROOT).as_posix())
    assert callers == {"aa_core/pipeline.py"}
