"""Fail when a committed notebook carries outputs or execution counts (they belong out of git)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def dirty_cells(path: Path) -> list[int]:
    """Indexes of code cells that still hold outputs or an execution count."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [
        i
        for i, cell in enumerate(notebook.get("cells", []))
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


def main(folder: str) -> int:
    problems = [(p, dirty_cells(p)) for p in sorted(Path(folder).glob("*.ipynb"))]
    problems = [(p, cells) for p, cells in problems if cells]
    for path, cells in problems:
        print(f"{path}: outputs not stripped in cells {cells}; run `nbstripout {path}`")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "notebooks"))
