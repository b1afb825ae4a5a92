"""`pipeline/tracking.py` is the only module of `pipeline/` that writes to MLflow.

Read from the source (AST), not by running the jobs: a call to a write function of the `mlflow`
module (``mlflow.log_metric``, ``mlflow.pyfunc.log_model``, ``mlflow.register_model``...), a write
function imported from it, or a write method of `MlflowClient` (``client.set_tag``...) in a
module that imports mlflow. Reads (``get_run``, ``download_artifacts``...) are allowed anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlflow

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
ADAPTER = PIPELINE / "tracking.py"
ADAPTER_MODULE = "pipeline.tracking"
WRITE_PREFIXES = (
    "log_",
    "set_",
    "create_",
    "delete_",
    "update_",
    "rename_",
    "register_",
    "transition_",
    "restore_",
    "copy_",
    "finalize_",
    "save_",
    "start_run",
    "end_run",
    "autolog",
)
CLIENT_WRITES = frozenset(n for n in dir(mlflow.MlflowClient) if n.startswith(WRITE_PREFIXES))


def _is_write(name: str) -> bool:
    return name.startswith(WRITE_PREFIXES)


def _mlflow_names(tree: ast.AST) -> tuple[set[str], set[str], set[str]]:
    """Names bound to mlflow modules, write functions imported from mlflow by name, and names
    bound to the adapter (its `log_artifacts` is the way to write, not a client's)."""
    modules: set[str] = set()
    functions: set[str] = set()
    adapter: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mlflow":
                    modules.add(alias.asname or "mlflow")
                elif alias.name == ADAPTER_MODULE and alias.asname:
                    adapter.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            for alias in node.names:
                bound = alias.asname or alias.name
                (functions if _is_write(alias.name) else modules).add(bound)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" == ADAPTER_MODULE:
                    adapter.add(alias.asname or alias.name)
    return modules, functions, adapter


def _root(node: ast.expr) -> ast.expr:
    """The innermost object of an attribute chain or call chain (`a` in `a.b().c`)."""
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.value if isinstance(node, ast.Attribute) else node.func
    return node


def mlflow_writes(source: str) -> list[str]:
    """`line: call` of every MLflow write in a module's source, in line order."""
    tree = ast.parse(source)
    modules, functions, adapter = _mlflow_names(tree)
    if not modules and not functions:
        return []
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in functions:
            found.append((node.lineno, func.id))
        elif isinstance(func, ast.Attribute):
            root = _root(func)
            name = root.id if isinstance(root, ast.Name) else ""
            if name in adapter:
                continue
            if (name in modules and _is_write(func.attr)) or func.attr in CLIENT_WRITES:
                found.append((node.lineno, ast.unparse(func)))
    return [f"{line}: {call}" for line, call in sorted(found)]


def test_only_the_adapter_writes_to_mlflow() -> None:
    offenders = {
        str(path.relative_to(PIPELINE.parent)): writes
        for path in sorted(PIPELINE.rglob("*.py"))
        if path != ADAPTER and (writes := mlflow_writes(path.read_text(encoding="utf-8")))
    }
    assert not offenders, (
        f"MLflow writes outside pipeline/tracking.py (move them there): {offenders}"
    )


def test_the_check_sees_every_kind_of_write() -> None:
    source = """
import mlflow
from mlflow import log_metric
from mlflow.tracking import MlflowClient as Client

def job(run_id, client):
    mlflow.log_metric("a", 1.0)
    with mlflow.start_run(run_id=run_id):
        mlflow.pyfunc.log_model(name="scorer")
    mlflow.MlflowClient().set_tag(run_id, "a", "b")
    client.set_registered_model_alias("m", "champion", "1")
    log_metric("b", 2.0)
    mlflow.MlflowClient().get_run(run_id)  # a read
    mlflow.artifacts.download_artifacts(run_id=run_id)  # a read
    frame.set_index("a")  # not MLflow
"""
    lines = [entry.split(":")[0] for entry in mlflow_writes(source)]
    assert lines == ["7", "8", "9", "10", "11", "12"]
    assert mlflow_writes(ADAPTER.read_text(encoding="utf-8"))  # the adapter does write


def test_a_module_without_mlflow_is_never_flagged() -> None:
    assert mlflow_writes("def f(d):\n    d.set_tag('a')\n    d.log_batch([])\n") == []


def test_writes_through_the_adapter_are_not_flagged() -> None:
    source = """
import mlflow
import pipeline.tracking as tracking
from pipeline import tracking as adapter

def job(run_id, folder):
    tracking.log_artifacts(run_id, folder)
    adapter.set_tags(run_id, {})
    mlflow.MlflowClient().log_artifacts(run_id, folder)
"""
    assert mlflow_writes(source) == ["9: mlflow.MlflowClient().log_artifacts"]
