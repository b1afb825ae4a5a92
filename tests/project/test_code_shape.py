"""Functions a reader can hold in their head: none in `pipeline/`, `bench/` or `tools/` is longer
than 80 lines, and none in `pipeline/` takes more than 6 parameters (where a signature grew, the
values that travel together become one parameter object)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

LONGEST = 80
MOST_PARAMETERS = 6
CHECKED = ("pipeline", "bench", "tools")

# Typer commands take one parameter per command-line option, and so does the job a command
# passes them to (`targeting run` calls it with the same names): their signature is the CLI's.
CLI_COMMANDS = {"pipeline/cli.py:score", "pipeline/cli.py:approve", "pipeline/jobs/score.py:score"}
# Not yet given parameter objects (issue 23, item 7): modules that were being changed by other
# work when this check came in. Each entry is to leave this list, never to join it.
PENDING_PARAMETERS: set[str] = set()
# Longer than 80 lines, not yet split (issue 23, item 7: bench/ and tools/ came under the check).
PENDING_LENGTH: set[str] = set()


def _functions(root: Path) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """`path:name` (relative to the root's parent) and node of every function under `root`."""
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield f"{where}:{node.name}", node


def long_functions(root: Path, longest: int = LONGEST) -> list[str]:
    """`path:line name (n lines)` of every function or method under `root` longer than `longest`."""
    found = []
    for name, node in _functions(root):
        lines = int(node.end_lineno or node.lineno) - node.lineno + 1
        if lines > longest:
            where = name.rsplit(":", 1)[0]
            found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters a caller passes: positional, keyword-only, *args and **kwargs; not self/cls."""
    given = node.args
    named = [*given.posonlyargs, *given.args, *given.kwonlyargs]
    count = sum(1 for a in named if a.arg not in ("self", "cls"))
    return count + (given.vararg is not None) + (given.kwarg is not None)


def wide_functions(root: Path, most: int = MOST_PARAMETERS) -> dict[str, int]:
    """`path:name` -> parameters of every function under `root` taking more than `most`."""
    return {name: n for name, node in _functions(root) if (n := parameter_count(node)) > most}


@pytest.mark.parametrize("part", CHECKED)
def test_no_function_is_longer_than_80_lines(part: str) -> None:
    too_long = [f for f in long_functions(PROJECT_ROOT / part) if _named(f) not in PENDING_LENGTH]
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)


def test_no_function_in_pipeline_takes_more_than_6_parameters() -> None:
    wide = wide_functions(PROJECT_ROOT / "pipeline")
    over = {k: n for k, n in wide.items() if k not in CLI_COMMANDS | PENDING_PARAMETERS}
    assert not over, "give these a parameter object:\n" + "\n".join(
        f"{name} ({n} parameters)" for name, n in sorted(over.items())
    )


def test_the_pending_lists_hold_only_what_is_still_pending() -> None:
    """A function split or given a parameter object leaves the lists (they only shrink)."""
    wide = set(wide_functions(PROJECT_ROOT / "pipeline"))
    long = {_named(f) for part in CHECKED for f in long_functions(PROJECT_ROOT / part)}
    assert not (PENDING_PARAMETERS | CLI_COMMANDS) - wide, "no longer wide: take them off"
    assert not PENDING_LENGTH - long, "no longer long: take them off"


def _named(found: str) -> str:
    """`bench/x.py:12 main (90 lines)` -> `bench/x.py:main`."""
    where, rest = found.split(":", 1)
    return f"{where}:{rest.split()[1]}"


def test_the_checks_count_a_long_function_and_a_wide_one(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n", encoding="utf-8")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/long.py:1 long (81 lines)"]
    wide = "class A:\n    def wide(self, a, b, c, /, d, *e, f, g, **h):\n        return a\n"
    narrow = "def narrow(a, b, c, d, e, f):\n    return a\n"
    (tmp_path / "wide.py").write_text(wide + narrow, encoding="utf-8")
    assert wide_functions(tmp_path) == {f"{tmp_path.name}/wide.py:wide": 8}
