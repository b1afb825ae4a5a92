"""The import graph points one way: each part of `pipeline` imports only the parts below it.

A deployment installs the light part (serve and what it needs) and must never pull in training,
evaluation or MLflow writes; the jobs wire the stages and nothing imports a job. The layers, from
the bottom: config and the time axis; the thread budget (compute); ingestion; the simulator;
features; the run plan (the windows by role, the ranking policy, the headline rate); serving;
training; the MLflow adapter; evaluation; the backtest; the jobs; the command line.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

# Part -> the parts it may import (besides itself). Modules directly under pipeline/ (config.py,
# timeaxis.py, tracking.py) are parts of their own, named by their module.
ALLOWED: dict[str, set[str]] = {
    "artefacts": set(),
    "config": {"artefacts"},
    "timeaxis": set(),
    "ingest": {"config", "timeaxis"},
    "simulate": {"config", "timeaxis", "ingest"},
    "features": {"config", "timeaxis", "ingest"},
    "plan": {"config", "timeaxis", "ingest", "features"},
    "serve": {"config", "compute", "timeaxis", "ingest", "features", "plan", "__init__"},
    "compute": {"config"},
    "train": {"config", "compute", "timeaxis", "ingest", "features", "plan", "serve"},
    "tracking": {"config", "timeaxis", "ingest", "features", "plan", "serve", "train"},
    "evaluate": {
        "config",
        "compute",
        "timeaxis",
        "ingest",
        "features",
        "plan",
        "serve",
        "train",
        "tracking",
    },
    "backtest": {
        "config",
        "compute",
        "timeaxis",
        "ingest",
        "simulate",
        "features",
        "plan",
        "serve",
        "train",
        "tracking",
        "evaluate",
    },
}
ALLOWED["jobs"] = set(ALLOWED) - {"jobs"}
ALLOWED["cli"] = {"config", "compute", "jobs"}

PIPELINE = PROJECT_ROOT / "pipeline"


def _part(module: str) -> str:
    """`pipeline.train.fit` -> `train`; `pipeline.config` -> `config`; `pipeline` -> `__init__`."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pipeline":
                found |= {f"pipeline.{alias.name}" for alias in node.names}
            elif node.module.startswith("pipeline."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
    return found


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> the modules where that import is written."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        source = _part("pipeline." + ".".join(path.relative_to(PIPELINE).with_suffix("").parts))
        for module in _imports(path):
            target = _part(module)
            if target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(PROJECT_ROOT)))
    return edges


def test_every_part_of_pipeline_is_placed_in_a_layer() -> None:
    parts = {
        p.stem if p.is_file() else p.name
        for p in PIPELINE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert parts - {"__main__"} <= set(ALLOWED), f"not placed: {parts - set(ALLOWED)}"


def test_imports_point_one_way() -> None:
    wrong = {
        f"{source} -> {target}": where
        for (source, target), where in import_edges().items()
        if source in ALLOWED and target not in ALLOWED[source]
    }
    assert not wrong, f"imports against the layers: {wrong}"


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from pipeline.evaluate.metrics import psi\nimport pipeline.jobs.run\n")
    assert _imports(module) == {"pipeline.evaluate.metrics", "pipeline.jobs.run"}
    assert "evaluate" not in ALLOWED["serve"] and "jobs" not in ALLOWED["evaluate"]


def _written_imports(path: Path, module: str, package: bool) -> set[tuple[str, str | None]]:
    """What the import statements of `module` name, as written: (name, None) for `import name`
    and (base, name) for `from base import name`, relative bases resolved against `module`'s
    package (`package`: the file is an __init__.py)."""
    written: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            written |= {(alias.name, None) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts[: len(parts) - node.level + package]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            written |= {(base, alias.name) for alias in node.names}
    return written


def module_imports(package: Path = PIPELINE) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, wherever the import is written: at the
    top, inside a function, or for types only under TYPE_CHECKING. A loop through an import
    inside a function does not fail at import time, but its two files still each need the
    other (issue 23 found `ingest/kcs.py` <-> `ingest/readers.py` that way), so it counts.

    `from p.q import r` is an edge to the module p.q.r when r is one, else to p.q (r is then a
    name of p/q/__init__.py). The package `__init__` Python runs before a submodule is not an
    edge: a file that names its siblings by their own modules does not import its package."""
    top = package.name
    modules = {
        ".".join((top, *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }

    def resolved(name: str, alias: str | None) -> str | None:
        if alias is not None and f"{name}.{alias}" in modules:
            return f"{name}.{alias}"  # from base import module
        while name and name not in modules:  # import a.b.c of a module a.b: a.b
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        written = _written_imports(path, module, path.name == "__init__.py")
        graph[module] = {m for name, alias in written if (m := resolved(name, alias))} - {module}
    return graph


def import_loop(graph: dict[str, set[str]]) -> list[str] | None:
    """One loop of the import graph (its modules, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_module_imports_itself_through_others() -> None:
    loop = import_loop(module_imports())
    assert loop is None, f"an import loop between files: {' -> '.join(loop or [])}"


def test_the_graph_names_the_modules_an_import_names() -> None:
    graph = module_imports()
    # `from pipeline.ingest import text` and `from pipeline.features import history, profiles`
    assert graph["pipeline.ingest.kcs"] >= {"pipeline.ingest.text"}
    assert {"pipeline.features.history", "pipeline.features.profiles"} <= graph[
        "pipeline.features.chunked"
    ]
    assert "pipeline.features" not in graph["pipeline.features.chunked"]


def _package(root: Path, files: dict[str, str]) -> Path:
    """A package `pipeline` under `root` with the given files (path -> source)."""
    for name, source in files.items():
        path = root / "pipeline" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root / "pipeline"


@pytest.mark.parametrize(
    "readers",
    [
        "from pipeline.ingest import kcs\n",  # a sibling named through its package
        "def read():\n    from pipeline.ingest.kcs import read_kcs\n",  # inside a function
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pipeline.ingest.kcs\n",
        "from . import kcs\n",  # relative
    ],
)
def test_the_loop_check_sees_a_loop_however_it_is_written(tmp_path: Path, readers: str) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "ingest/__init__.py": "",
            "ingest/text.py": "",
            "ingest/kcs.py": "from pipeline.ingest import readers, text\n",
            "ingest/readers.py": readers,
        },
    )
    loop = import_loop(module_imports(package))
    assert loop is not None and set(loop) == {"pipeline.ingest.kcs", "pipeline.ingest.readers"}


def test_a_package_importing_its_modules_is_no_loop_unless_they_import_it(tmp_path: Path) -> None:
    init = "from pipeline.simulate.summary import summary\n\n\ndef simulate() -> None: ...\n"
    files = {
        "__init__.py": "",
        "simulate/__init__.py": init,
        "simulate/world.py": "",
        "simulate/summary.py": "from pipeline.simulate import world\n",
    }
    assert import_loop(module_imports(_package(tmp_path, files))) is None
    # ... but a module that takes a name its package's __init__ defines does import the package
    files["simulate/summary.py"] = "from pipeline.simulate import simulate, world\n"
    loop = import_loop(module_imports(_package(tmp_path, files)))
    assert loop is not None and set(loop) == {"pipeline.simulate", "pipeline.simulate.summary"}
