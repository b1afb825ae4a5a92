"""Counts of `pipeline/` read from its syntax trees: the figures issue 23 measured before its
restructuring, printed in the same units so a closing note can set them side by side.

    .venv/bin/python tools/code_counts.py [--root PATH]

`--root` is a checkout of the project (default: this one), so an older commit can be counted
from a worktree (`git worktree add /tmp/old <commit>`). Nothing is imported from the checkout:
every figure comes from `ast`, so a commit that no longer imports still counts.

What is counted:
- modules, lines (physical lines of every .py file), functions (methods and nested ones too) and
  their length in lines (decorators left out, as `tests/project/test_code_shape.py` counts them);
- functions taking 7 or more parameters (self and cls left out, *args and **kwargs counted);
- parameters annotated with the whole `Config` (all, and outside `jobs/`) and with one of its
  sections (a class of `pipeline/config.py` whose name ends in `Config`);
- uses of the name `Any` (the import itself left out), those inside `dict[str, Any]`, and those
  in `serve/`;
- import statements inside functions, and those of `pipeline` modules;
- import cycles between files: groups of modules that import each other, once over module-level
  imports only (what fails at import time) and once over every import (inside functions too);
- functions named `reference_window`, and functions that construct a `Window` (each decides
  where a window lies);
- the random stratum: module-level constants bound to the reason "random", functions named for
  the stratum, and comparisons of a value with the random reason (each a rule for a stratum row);
- display strings used as keys: the words a reader sees, written outside `evaluate/keys.py` where
  code selects or tests by them.
"""

from __future__ import annotations

import argparse
import ast
import math
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDE = 7
# Prose the issue found code selecting rows by: (kind of use, the literal).
DISPLAY_KEYS = (
    ("literal", "all declarations (ground truth)"),
    ("literal", "random stratum (IPW)"),
    ("literal", "random stratum (doubly robust)"),
    ("literal", "policy|capacity"),
    ("separator", " - "),
    ("prefix", "random"),
    ("prefix", "not judged"),
    ("prefix", "not anchored"),
    ("prefix", "model - "),
)
RANDOM_NAMES = {"RANDOM", "RANDOM_REASON"}
# Named "random" but no selection reason: the random baseline is a model of the metrics frame.
NOT_A_REASON = {"RANDOM_BASELINE"}


@dataclass(frozen=True)
class Module:
    """One file of the package: its dotted name, path under the root and parsed tree."""

    name: str
    where: str
    tree: ast.Module
    lines: int


@dataclass
class Tally:
    """Counts by kind, each with the places it was found (`path:function` or `path:line`)."""

    places: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, place: str) -> None:
        self.places.setdefault(kind, []).append(place)

    def count(self, kind: str) -> int:
        return len(self.places.get(kind, []))


def modules(root: Path) -> list[Module]:
    """Every module of `root/pipeline`, parsed."""
    found = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root / "pipeline").as_posix()
        found.append(Module(name, where, ast.parse(text), len(text.splitlines())))
    return found


def functions(module: Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method of a module, nested ones included."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    """The parameters a caller passes (`tests/project/test_code_shape.py` counts them so)."""
    given = node.args
    named = [*given.posonlyargs, *given.args, *given.kwonlyargs]
    extra = [a for a in (given.vararg, given.kwarg) if a is not None]
    return [a for a in named if a.arg not in ("self", "cls")] + extra


def nearest_rank(values: list[int], share: float) -> int:
    """The nearest-rank percentile: the smallest value with `share` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def shape_lines(found: list[Module]) -> list[str]:
    """Modules, lines, functions, their lengths and the wide ones."""
    lengths, wide = [], []
    for module in found:
        for node in functions(module):
            lengths.append(int(node.end_lineno or node.lineno) - node.lineno + 1)
            if (n := len(parameters(node))) >= WIDE:
                wide.append((n, f"{module.where}:{node.name}"))
    widest = max((n for n, _ in wide), default=0)
    names = ", ".join(sorted(name for n, name in wide if n == widest))
    return [
        f"modules: {len(found)}",
        f"lines: {sum(m.lines for m in found):,}",
        f"functions: {len(lengths)}",
        f"function length: median {statistics.median(lengths):g}, "
        f"p90 {nearest_rank(lengths, 0.9)}, max {max(lengths)}",
        f"functions with {WIDE} or more parameters: {len(wide)}"
        + (f" (max {widest}: {names})" if wide else ""),
    ]


def config_sections(root: Path) -> set[str]:
    """The classes of `pipeline/config.py` named `...Config`, the whole `Config` left out."""
    tree = ast.parse((root / "pipeline" / "config.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and node.name != "Config"
    }


def annotation_names(annotation: ast.expr | None) -> set[str]:
    """The names an annotation mentions (`Config | None` -> {"Config"}), strings parsed too."""
    if annotation is None:
        return set()
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    names = {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
    return names | {n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)}


def config_lines(found: list[Module], sections: set[str]) -> list[str]:
    """Parameters taking the whole `Config` (all, outside jobs/) and taking a section."""
    whole = outside_jobs = section = 0
    for module in found:
        for node in functions(module):
            for arg in parameters(node):
                names = annotation_names(arg.annotation)
                if "Config" in names:
                    whole += 1
                    outside_jobs += not module.where.startswith("jobs/")
                elif names & sections:
                    section += 1
    return [
        f"parameters annotated Config: {whole} (outside jobs/: {outside_jobs})",
        f"parameters annotated with a Config section: {section}",
    ]


def any_lines(found: list[Module]) -> list[str]:
    """Uses of `Any`: all, inside dict[str, Any], in serve/ and the serve file with the most."""
    uses: Counter[str] = Counter()
    in_dicts = 0
    for module in found:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Name) and node.id == "Any":
                uses[module.where] += 1
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and node.value.id == "dict"
                and isinstance(node.slice, ast.Tuple)
                and [ast.unparse(e) for e in node.slice.elts] == ["str", "Any"]
            ):
                in_dicts += 1
    serve = Counter({where: n for where, n in uses.items() if where.startswith("serve/")})
    most = ", ".join(f"{where} {n}" for where, n in serve.most_common(2))
    return [
        f"uses of Any: {sum(uses.values())} (dict[str, Any]: {in_dicts}); "
        f"in serve/: {sum(serve.values())}" + (f" (most: {most})" if most else "")
    ]


def imported(module: Module, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's modules an import statement names (`from a import b` names a.b if b is a
    module, else a); relative imports resolved against the module's package."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.name.split(".")
            if not module.where.endswith("__init__.py"):
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([node.module] if node.module else [])])
        named = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    targets = set()
    for name in named:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module.name:
            targets.add(name)
    return targets


def import_graphs(found: list[Module]) -> tuple[dict[str, set[str]], dict[str, set[str]], Tally]:
    """Module -> modules it imports at module level, and over every import; the tally of
    imports inside functions ("all", and "pipeline": those naming a module of the package)."""
    known = {m.name for m in found}
    top: dict[str, set[str]] = {m.name: set() for m in found}
    every: dict[str, set[str]] = {m.name: set() for m in found}
    inner = Tally()
    for module in found:
        inside = {
            id(node)
            for function in functions(module)
            for node in ast.walk(function)
            if isinstance(node, ast.Import | ast.ImportFrom)
        }
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = imported(module, node, known)
            every[module.name] |= targets
            if id(node) in inside:
                inner.add("all", f"{module.where}:{node.lineno}")
                if _names_pipeline(node):
                    inner.add("pipeline", f"{module.where}:{node.lineno}")
            else:
                top[module.name] |= targets
    return top, every, inner


def _names_pipeline(node: ast.Import | ast.ImportFrom) -> bool:
    """Whether an import names the `pipeline` package or one of its modules (a relative one
    always does)."""
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "pipeline" for a in node.names)
    return node.level > 0 or (node.module or "").split(".")[0] == "pipeline"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that reach each other (strongly connected components).

    Tarjan's algorithm, written out (iteratively) because the standard library's
    `graphlib.TopologicalSorter` stops at the first cycle it meets, and a count needs them all.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            step = next((s for s in successors if s not in index or s in on_stack), None)
            if step is not None and step not in index:
                index[step] = low[step] = len(index)
                stack.append(step)
                on_stack.add(step)
                work.append((step, iter(sorted(graph.get(step, ())))))
                continue
            if step is not None:  # on the stack: a way back into the current group
                low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def import_lines(found: list[Module]) -> list[str]:
    """Imports inside functions and the import cycles between files."""
    top, every, inner = import_graphs(found)
    lines = [
        f"imports inside functions: {inner.count('all')} "
        f"(of pipeline modules: {inner.count('pipeline')})"
    ]
    for label, graph in (("module-level imports", top), ("every import", every)):
        groups = cycles(graph)
        shown = "; ".join(" <-> ".join(g.removeprefix("pipeline.") for g in c) for c in groups)
        lines.append(
            f"import cycles over {label}: {len(groups)}" + (f" ({shown})" if shown else "")
        )
    return lines


def _is_random(node: ast.expr) -> bool:
    """The random reason: the literal "random" or a constant named for it."""
    if isinstance(node, ast.Constant):
        return node.value == "random"
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return name in RANDOM_NAMES


def _binds_random(node: ast.stmt) -> list[str]:
    """The module-level names a statement binds to the literal "random" (`A, B = "random", ...`
    too) or to another RANDOM constant (an alias)."""
    if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
        return []
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    pairs: list[tuple[ast.expr, ast.expr]] = []
    for target in targets:
        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            pairs += zip(target.elts, node.value.elts, strict=False)
        else:
            pairs.append((target, node.value))
    return [
        t.id
        for t, v in pairs
        if isinstance(t, ast.Name)
        and "RANDOM" in t.id
        and _is_random(v)
        and t.id not in NOT_A_REASON
    ]


def window_and_stratum(found: list[Module]) -> Tally:
    """Window functions and random-stratum rules, each with where it was found."""
    tally = Tally()
    for module in found:
        for statement in module.tree.body:
            for name in _binds_random(statement):
                tally.add("random constants", f"{module.where}:{name}")
        for node in functions(module):
            place = f"{module.where}:{node.name}"
            if node.name == "reference_window":
                tally.add("reference_window", place)
            if "stratum" in node.name:
                tally.add("stratum functions", place)
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            if any(isinstance(c.func, ast.Name) and c.func.id == "Window" for c in calls):
                tally.add("window makers", place)
        for found_node in ast.walk(module.tree):
            if _compares_with_random(found_node):
                tally.add("random tests", f"{module.where}:{getattr(found_node, 'lineno', 0)}")
    return tally


def _compares_with_random(node: ast.AST) -> bool:
    """`x == RANDOM`, `x != "random"`, `x in (RANDOM, ...)`, `s.eq(RANDOM)`, `s.isin([RANDOM])`."""
    if isinstance(node, ast.Compare):
        sides = [node.left, *node.comparators]
        members = [
            e for s in sides if isinstance(s, ast.Tuple | ast.List | ast.Set) for e in s.elts
        ]
        return any(_is_random(s) for s in [*sides, *members])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("eq", "ne") and node.args:
            return _is_random(node.args[0])
        if (
            node.func.attr == "isin"
            and node.args
            and isinstance(node.args[0], ast.List | ast.Tuple)
        ):
            return any(_is_random(e) for e in node.args[0].elts)
    return False


def decision_lines(found: list[Module]) -> list[str]:
    """Window functions and random-stratum rules, named."""
    tally = window_and_stratum(found)

    def named(kind: str) -> str:
        places = tally.places.get(kind, [])
        return f"{len(places)}" + (f" ({', '.join(places)})" if places else "")

    tests = Counter(place.split(":")[0] for place in tally.places.get("random tests", []))
    return [
        f"functions named reference_window: {named('reference_window')}",
        f"functions that construct a Window: {named('window makers')}",
        f"constants bound to the random reason: {named('random constants')}",
        f"functions named for the stratum: {named('stratum functions')}",
        f"comparisons with the random reason: {tally.count('random tests')} in {len(tests)} "
        f"modules ({', '.join(f'{w} {n}' for w, n in sorted(tests.items()))})",
    ]


def display_key_lines(root: Path, found: list[Module]) -> list[str]:
    """The display strings written outside `evaluate/keys.py`, in `pipeline/` and `tools/`."""
    trees = [(f"pipeline/{m.where}", m.tree) for m in found if m.where != "evaluate/keys.py"]
    for path in sorted((root / "tools").glob("*.py")):
        if path.name != Path(__file__).name:
            trees.append((f"tools/{path.name}", ast.parse(path.read_text(encoding="utf-8"))))
    lines = []
    for use, text in DISPLAY_KEYS:
        places = [
            f"{where}:{getattr(node, 'lineno', 0)}"
            for where, tree in trees
            for node in ast.walk(tree)
            if _uses_display(node, use, text)
        ]
        shown = f" ({', '.join(places)})" if places else ""
        lines.append(f"display string {text!r} as a {use}: {len(places)}{shown}")
    return lines


def _uses_display(node: ast.AST, use: str, text: str) -> bool:
    """Whether a node writes the display string as a literal, a separator tested with `in`, or
    a prefix tested with `startswith` (str or pandas `.str`)."""
    if use == "literal":
        return isinstance(node, ast.Constant) and node.value == text
    if use == "separator":
        return (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and node.left.value == text
            and all(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "startswith"
        and any(isinstance(a, ast.Constant) and a.value == text for a in node.args)
    )


def commit(root: Path) -> str:
    """The checkout's commit, short, or "?" outside git."""
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def report(root: Path) -> list[str]:
    """Every figure, one per line."""
    found = modules(root)
    return [
        f"pipeline/ at {root} (commit {commit(root)})",
        *shape_lines(found),
        *config_lines(found, config_sections(root)),
        *any_lines(found),
        *import_lines(found),
        *decision_lines(found),
        *display_key_lines(root, found),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout of the project")
    args = parser.parse_args()
    print("\n".join(report(args.root.resolve())))


if __name__ == "__main__":
    main()
