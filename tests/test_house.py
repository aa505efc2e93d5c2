"""The shape of the house: ``import hgzoo`` loads the library and nothing on top of it, and the package's
imports, read from its own source, run one way (no circle)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Loaded on first use only: the packages on top of the models, and the heavy optional dependencies.
NOT_AT_IMPORT = ("hgzoo.deploy", "hgzoo.data", "hgzoo.train", "hgzoo.hub", "hgzoo.inference", "hgzoo.features",
                 "hgzoo.cli", "hgzoo.publish", "hgzoo.checkpoint",
                 "benchmarks", "torchvision.transforms.v2", "onnx", "onnxruntime", "openvino", "nncf", "timm")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_import_hgzoo_loads_only_the_library():
    loaded = _modules_after("import hgzoo")
    heavy = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_AT_IMPORT)]
    assert not heavy, f"`import hgzoo` loads {heavy}: they should load on first use"
    assert {"hgzoo.models", "hgzoo._builder", "hgzoo._registry", "hgzoo.layers"} <= set(loaded)


LAZY_CASES = [
    "import hgzoo; f = hgzoo.predict",
    "import hgzoo, hgzoo.inference; f = hgzoo.predict",
    "import hgzoo; from hgzoo.inference import list_image_files; f = hgzoo.predict",
    "import hgzoo.cli.predict; import hgzoo; f = hgzoo.predict",
    "from hgzoo import predict as f",
]
# One process, one forked child per case: the parent has imported torch and torchvision (what hgzoo sits on, and
# most of the import time) but nothing of hgzoo, so each case starts, as in a fresh interpreter, with no hgzoo
# module loaded.
EACH_IN_A_FORK = """
import json, os, sys, traceback
import torch, torchvision  # noqa: F401
assert not [m for m in sys.modules if m.split(".")[0] == "hgzoo"]
failed = []
for code in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        try:
            exec(code + "\\nimport hgzoo\\nassert callable(f) and f is hgzoo.predict"
                 "\\nassert hgzoo.deploy.reparameterize is hgzoo.reparameterize", {})
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(code)
print(json.dumps(failed))
"""


def test_lazy_names_resolve_whatever_loads_them_first():
    out = subprocess.run([sys.executable, "-c", EACH_IN_A_FORK, json.dumps(LAZY_CASES + ["f = None"])], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # the last case is broken on purpose: a failing case is seen
    assert json.loads(out.stdout.splitlines()[-1]) == ["f = None"], out.stderr


def test_unknown_attribute_is_an_attribute_error():
    import hgzoo

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hgzoo.nope  # noqa: B018


# --- the import graph, read from the source ------------------------------------------------------------------------

def _modules(package: str) -> dict[str, Path]:
    """Module name → file, for every .py under ``package`` (a folder of the repository root)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(package: str) -> dict[str, dict[str, set[str]]]:
    """For each module of ``package``: what it imports when it is imported (``"module"``: statements at module or
    class level) and what its functions import when they run (``"function"``). Relative imports are resolved;
    ``from pkg import name`` counts as an import of ``pkg.name`` where that is a module, else of ``pkg``."""
    mods = _modules(package)
    edges: dict[str, dict[str, set[str]]] = {m: {"module": set(), "function": set()} for m in mods}

    def visit(node: ast.AST, mod: str, is_pkg: bool, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            k = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else kind
            if isinstance(child, ast.Import):
                edges[mod][k].update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([child.module] if child.module else []))
                edges[mod][k].update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in child.names)
            visit(child, mod, is_pkg, k)

    for mod, path in mods.items():
        visit(ast.parse(path.read_text(), str(path)), mod, path.name == "__init__.py", "module")
    return edges


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


# Imports inside functions that are allowed to close a circle: none. (The hub once built a model to convert Paddle
# weights while the builder asked it for them; now the hub returns files and the builder converts them.)
KNOWN_FUNCTION_LEVEL_EDGES: set[tuple[str, str]] = set()


@pytest.mark.parametrize("package", ["hgzoo", "benchmarks"])
def test_imports_at_module_level_form_no_circle(package):
    edges = _imports(package)
    graph = {m: e["module"] for m, e in edges.items()}
    assert _circles(graph) == [], "a circle of module-level imports: a responsibility is in the wrong place"


def test_imports_inside_functions_form_no_other_circle():
    edges = _imports("hgzoo")
    graph = {m: {t for t in e["module"] | e["function"] if (m, t) not in KNOWN_FUNCTION_LEVEL_EDGES}
             for m, e in edges.items()}
    assert _circles(graph) == []


def test_the_library_never_imports_the_tools():
    edges = _imports("hgzoo")
    upward = sorted((m, t) for m, e in edges.items() for t in e["module"] | e["function"]
                    if t == "benchmarks" or t.startswith("benchmarks."))
    assert not upward, f"hgzoo imports the tools beside it: {upward}"


def test_the_graph_reader_sees_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(_circles(graph)) == [["a", "b", "c"], ["e"]]
    edges = _imports("hgzoo")
    assert "hgzoo.hub" in edges["hgzoo._builder"]["function"] and "hgzoo.models" in edges["hgzoo"]["module"]
    assert "hgzoo.layers" in edges["hgzoo.models.pphgnet"]["module"]  # a relative `from ..layers import ...`


# argparse outside the command floor: the safe reader admits ``argparse.Namespace`` (timm's training checkpoints
# hold one), and train.py's flags are built beside its settings table.
ARGPARSE_OUTSIDE_CLI = {"hgzoo._files", "hgzoo.train.config"}


def test_commands_live_on_one_floor():
    """Every parser, exit code and printed line is on the command floor (``hgzoo.cli``), and nothing below it
    imports it: ``python -m hgzoo`` is the only other way in."""
    edges = _imports("hgzoo")
    parsers = {m for m, e in edges.items()
               if "argparse" in e["module"] | e["function"] and not m.startswith("hgzoo.cli")}
    assert parsers <= ARGPARSE_OUTSIDE_CLI, f"argparse outside hgzoo.cli: {sorted(parsers - ARGPARSE_OUTSIDE_CLI)}"
    upward = sorted((m, t) for m, e in edges.items() for t in e["module"] | e["function"]
                    if t.startswith("hgzoo.cli") and not m.startswith("hgzoo.cli") and m != "hgzoo.__main__")
    assert not upward, f"the library imports the command floor: {upward}"
    assert "argparse" in edges["hgzoo.cli.base"]["module"]  # the reader sees the floor's own parsers


def _private_timm_uses(path: Path) -> list[str]:
    """timm's private names that ``path`` uses: an import of a ``_module`` or ``_name`` of timm, or an attribute
    ``_name`` read off a name bound to a timm import."""
    tree = ast.parse(path.read_text(), str(path))
    found, timm_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "timm":
                    timm_names.add((a.asname or a.name).split(".")[0])
                    found += [f"import {a.name}"] if any(p.startswith("_") for p in a.name.split(".")) else []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "timm":
            if any(p.startswith("_") for p in node.module.split(".")):
                found.append(f"from {node.module} import ...")
            for a in node.names:
                timm_names.add(a.asname or a.name)
                found += [f"from {node.module} import {a.name}"] if a.name.startswith("_") else []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in timm_names):
            found.append(f"{node.value.id}.{node.attr}")
    return [f"{path.relative_to(ROOT)}: {f}" for f in found]


def test_timm_through_its_public_api_only():
    """The library and the tools use timm's public names only (its registration API, not ``_model_entrypoints``):
    timm's private modules change between releases."""
    files = [p for d in ("hgzoo", "benchmarks", "examples") for p in sorted((ROOT / d).rglob("*.py"))]
    files += sorted(ROOT.glob("*.py"))
    assert [u for p in files for u in _private_timm_uses(p)] == []


def test_private_timm_uses_are_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    src = tmp_path / "m.py"
    src.write_text("import timm.models._registry as r\nfrom timm.models import register_model, _x\n"
                   "from timm.layers import create_act\nimport timm\nr._model_entrypoints\ntimm._hidden\n")
    assert _private_timm_uses(src) == [
        "m.py: import timm.models._registry", "m.py: from timm.models import _x", "m.py: r._model_entrypoints",
        "m.py: timm._hidden"]
