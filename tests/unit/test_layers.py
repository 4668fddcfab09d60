"""The tree is the architecture: imports point only downward, nothing imports in a circle, and
no pipeline module reaches the commands (the CLI or the local dev stack)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.paths import ROOT

#: Each top-level package's floor: a module may import its own floor or lower ones.
FLOORS = {
    "clickstream": 0,  # the shared core: settings, errors, logging, time, the domain model
    "hbase_schema": 1,
    "storage": 1,
    "indexing": 1,
    "ingest": 2,
    "speed": 2,
    "processing": 2,
    "serving": 2,
    "traffic": 3,  # tools before Kafka and the harness: above the pipeline
    "commands": 4,  # the CLI, schema bootstrap, the local stack: on top
}
PIPELINE_TOP = 2


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the project's packages."""
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports_of(path: Path) -> set[str]:
    """Every project module ``path`` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in FLOORS}


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are not modules dropped)."""
    known = dict(modules())
    return {
        name: {target for target in imports_of(path) if target in known and target != name}
        for name, path in known.items()
    }


class TestLayers:
    def test_imports_point_only_downward(self) -> None:
        """No module imports a package on a higher floor than its own."""
        upward = sorted(
            f"{source} -> {target}"
            for source, targets in graph().items()
            for target in targets
            if FLOORS[target.split(".")[0]] > FLOORS[source.split(".")[0]]
        )
        assert upward == []

    def test_no_pipeline_module_imports_the_commands_or_the_traffic_tools(self) -> None:
        """Production code takes the dev stack's paths as inputs; it never imports them."""
        reaching = sorted(
            f"{source} -> {target}"
            for source, targets in graph().items()
            for target in targets
            if FLOORS[source.split(".")[0]] <= PIPELINE_TOP
            and FLOORS[target.split(".")[0]] > PIPELINE_TOP
        )
        assert reaching == []

    def test_no_import_cycle(self) -> None:
        """Following imports never leads back to where it started (function-level included)."""
        edges = graph()
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        cycles: list[list[str]] = []

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for target in sorted(edges[node]):
                if state.get(target) == 1:
                    cycles.append([*path[path.index(target) :], target])
                elif target not in state:
                    visit(target, [*path, target])
            state[node] = 2

        for node in sorted(edges):
            if node not in state:
                visit(node, [node])
        assert cycles == []

    def test_the_walk_sees_the_packages(self) -> None:
        """The checks above look at real modules and real imports (a guard against a walk that
        finds nothing and so passes)."""
        edges = graph()
        assert "ingest.consumer" in edges
        assert "clickstream.errors" in edges["ingest.consumer"]
        assert len(edges) > 60
