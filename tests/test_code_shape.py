"""Functions a reader can hold in their head: none in `pipeline/` is longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.config import PROJECT_ROOT

LONGEST = 80


def long_functions(root: Path, longest: int = LONGEST) -> list[str]:
    """`path:line name (n lines)` of every function or method under `root` longer than `longest`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = int(node.end_lineno or node.lineno) - node.lineno + 1
                if lines > longest:
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_pipeline_is_longer_than_80_lines() -> None:
    too_long = long_functions(PROJECT_ROOT / "pipeline")
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)


def test_the_check_counts_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n", encoding="utf-8")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/long.py:1 long (81 lines)"]
