"""The import graph points one way: each part of `pipeline` imports only the parts below it.

A deployment installs the light part (serve and what it needs) and must never pull in training,
evaluation or MLflow writes; the jobs wire the stages and nothing imports a job. The layers, from
the bottom: config and the time axis; the thread budget (compute); ingestion; the simulator;
features; serving; training; the MLflow adapter; evaluation; the backtest; the jobs; the command
line.
"""

from __future__ import annotations

import ast
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
    "serve": {"config", "timeaxis", "ingest", "features", "__init__"},
    "compute": {"config"},
    "train": {"config", "compute", "timeaxis", "ingest", "features", "serve"},
    "tracking": {"config", "timeaxis", "ingest", "features", "serve", "train"},
    "evaluate": {
        "config",
        "compute",
        "timeaxis",
        "ingest",
        "features",
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


def module_imports() -> dict[str, set[str]]:
    """Module -> the `pipeline` modules it imports, wherever the import is written (inside a
    function, or for types only under TYPE_CHECKING: a loop there is still a loop to read)."""
    modules = {
        "pipeline." + ".".join(p.relative_to(PIPELINE).with_suffix("").parts): p
        for p in PIPELINE.rglob("*.py")
    }
    names = {m.removesuffix(".__init__"): m for m in modules}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        for name in _imports(path):
            # `from pipeline.train import fit` names the module pipeline.train.fit
            for candidate in (name, name.rsplit(".", 1)[0]):
                if candidate in names and candidate != "pipeline":
                    found.add(names[candidate].removesuffix(".__init__"))
                    break
        graph[module.removesuffix(".__init__")] = found - {module.removesuffix(".__init__")}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    import graphlib

    graph = module_imports()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"an import loop between files: {' -> '.join(error.args[1])}")


def test_the_loop_check_sees_a_loop() -> None:
    import graphlib

    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
    assert module_imports()["pipeline.ingest.kcs"] >= {"pipeline.ingest.text"}
