"""The package's layers import one way only (ARCHITECTURE.md): a module imports its own layer or those below it.

The checker reads every module's ``import`` statements with ``ast`` (function-level imports included, since a lazy
import is still a dependency) and compares the importing and the imported layer. It also looks for import cycles
between modules. Both are tested on small fixture packages with a planted backwards import and a planted cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import depthforge

# Bottom to top; units on one rank are peers and must not import each other. Mirrored in ARCHITECTURE.md.
LAYERS: list[tuple[str, ...]] = [
    ("depthforge.version", "depthforge.config", "depthforge.console"),
    ("depthforge.io",),
    ("depthforge.viz", "depthforge.metrics", "depthforge.geometry"),
    ("depthforge.data", "depthforge.models", "depthforge.losses"),
    ("depthforge.export", "depthforge.video"),
    ("depthforge.sources",),
    ("depthforge.predict",),
    ("depthforge.evaluation",),
    ("depthforge.engine",),
    ("depthforge.demo", "depthforge.serve", "depthforge"),  # the package root is the Python API's face: its names resolve downwards
    ("depthforge.cli",),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package folder ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def unit_of(module: str) -> str:
    """The longest layer unit that holds ``module`` (``depthforge.data.pairs`` -> ``depthforge.data``); the package
    root is a unit of its own module only, so a new top-level module must be placed in the table."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in RANK:
            return ".".join(parts[:n])
    if module == parts[0] and module in RANK:
        return module
    raise KeyError(f"{module}: in no layer; add its package to LAYERS and to ARCHITECTURE.md")


def imports_of(module: str, path: Path, known: dict[str, Path], package: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` for each import of the package in ``path``: every one, lazy ones included
    (``importlib.import_module("depthforge.x")`` with a literal or a module-level dict of literals counts too)."""
    tree = ast.parse(path.read_text(), str(path))
    def named(node: ast.AST) -> list[tuple[int, str]]:
        return [(node.lineno, v.value) for v in ast.walk(node) if isinstance(v, ast.Constant)
                and isinstance(v.value, str) and v.value in known and v.value.startswith(f"{package}.")]

    # Module paths named as strings count where they are imported from: import_module("...") calls, and
    # module-level tables of them (the package root's _PUBLIC); a "-m depthforge.cli" argument does not.
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", getattr(n.func, "id", None)) == "import_module"]
    found = [hit for n in calls + [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))]
             for hit in named(n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == package]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing module's package
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != package:
                continue
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            found += [(node.lineno, f"{source}.{a.name}" if f"{source}.{a.name}" in known else source)
                      for a in node.names]
    return sorted(set(found))


def layer_violations(root: Path, package: str = "depthforge") -> list[str]:
    """Every import that runs against the layer order, as ``file:line: a (rank) imports b (rank)``."""
    known = module_names(root, package)
    problems = []
    for module, path in known.items():
        unit = unit_of(module)
        for line, target in imports_of(module, path, known, package):
            other = unit_of(target)
            if other != unit and RANK[other] >= RANK[unit]:
                kind = "a peer" if RANK[other] == RANK[unit] else "a higher layer"
                problems.append(f"{path}:{line}: {module} (layer {RANK[unit]}) imports {target}, {kind} "
                                f"(layer {RANK[other]})")
    return problems


def import_cycles(root: Path, package: str = "depthforge") -> list[list[str]]:
    """Cycles in the module import graph (each cycle once, as the list of modules along it)."""
    known = module_names(root, package)
    graph = {m: sorted({t for _, t in imports_of(m, p, known, package) if t in known and t != m})
             for m, p in known.items()}
    cycles, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in graph:
        if start not in state:
            visit(start, [start])
    return cycles


PACKAGE_ROOT = Path(depthforge.__file__).parent


def test_package_imports_follow_the_layers():
    assert layer_violations(PACKAGE_ROOT) == []


def test_package_has_no_import_cycles():
    assert import_cycles(PACKAGE_ROOT) == []


def test_every_package_folder_is_in_a_layer():
    for module in module_names(PACKAGE_ROOT, "depthforge"):
        unit_of(module)  # raises for a new top-level package nobody placed


def _fixture_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "depthforge"
    for name in ("", "io", "data", "metrics", "predict", "evaluation", "engine"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "config.py").write_text("")
    for rel, text in files.items():
        (root / rel).write_text(text)
    return root


def test_checker_accepts_downward_imports(tmp_path):
    root = _fixture_package(tmp_path, {
        "io/depth.py": "import numpy\n",
        "data/pairs.py": "from depthforge.io.depth import read\nfrom depthforge import config\n",
        "evaluation/runner.py": "from depthforge.predict import load\nfrom ..metrics import ssim\n",
    })
    assert layer_violations(root) == []


@pytest.mark.parametrize("rel, text, culprit", [
    ("data/pairs.py", "from depthforge.predict.outputs import clamp_depth\n", "depthforge.predict.outputs"),
    ("metrics/runner.py", "def f():\n    from depthforge.predict import predict_native\n", "depthforge.predict"),
    ("predict/tiling.py", "import depthforge.evaluation.protocols\n", "depthforge.evaluation.protocols"),
    ("io/depth.py", "from ..data import base\n", "depthforge.data"),
    ("metrics/x.py", "from depthforge.viz import colorize\n", "depthforge.viz"),  # peers
])
def test_checker_flags_a_planted_backwards_import(tmp_path, rel, text, culprit):
    root = _fixture_package(tmp_path, {rel: text})
    problems = layer_violations(root)
    assert len(problems) == 1 and culprit in problems[0] and rel.split("/")[-1] in problems[0]


def test_checker_sees_lazy_imports_and_allows_no_alias_exception(tmp_path):
    # A PEP 562 alias in an __init__ is a dependency like any other import: there is no exception for it any more.
    alias = "def __getattr__(name):\n    from depthforge import evaluation\n    return getattr(evaluation, name)\n"
    root = _fixture_package(tmp_path, {"metrics/__init__.py": alias})
    assert len(layer_violations(root)) == 1
    lazy = ('_PUBLIC = {"x": "depthforge.evaluation"}\n\ndef __getattr__(name):\n    import importlib\n'
            '    return getattr(importlib.import_module(_PUBLIC[name]), name)\n')
    root = _fixture_package(tmp_path / "b", {"io/__init__.py": lazy})  # a module path named as a string
    problems = layer_violations(root)
    assert len(problems) == 1 and "depthforge.evaluation" in problems[0]
    run = 'def again():\n    import subprocess\n    subprocess.call(["python", "-m", "depthforge.evaluation"])\n'
    direct = 'def f():\n    import importlib\n    return importlib.import_module("depthforge.evaluation")\n'
    root = _fixture_package(tmp_path / "c", {"io/runner.py": run, "io/lazy.py": direct})
    problems = layer_violations(root)  # running a command is not importing it; import_module is
    assert len(problems) == 1 and "lazy.py" in problems[0]


def test_checker_finds_a_planted_cycle(tmp_path):
    root = _fixture_package(tmp_path, {
        "predict/predictor.py": "def tiled():\n    from depthforge.predict.tiling import predict_tiled\n",
        "predict/tiling.py": "from depthforge.predict.predictor import predict_native\n",
    })
    assert layer_violations(root) == []  # same layer: only the cycle check sees it
    cycles = import_cycles(root)
    assert len(cycles) == 1 and set(cycles[0]) == {"depthforge.predict.predictor", "depthforge.predict.tiling"}


def test_moved_names_left_no_aliases_and_the_public_names_resolve():
    import importlib

    import depthforge.metrics
    from depthforge import predict, sources

    for gone in ("depthforge.inference", "depthforge.inference.depth_io"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
    with pytest.raises(AttributeError):
        depthforge.metrics.get_protocol  # noqa: B018 - moved to depthforge.evaluation, no alias left
    assert depthforge.load is predict.load and depthforge.DepthResult is predict.DepthResult
    assert depthforge.DepthSource is sources.DepthSource
    with pytest.raises(AttributeError):
        depthforge.no_such_name  # noqa: B018
