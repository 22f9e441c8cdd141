"""The rooms of DESIGN.md import only what the table allows, and nothing imports in a cycle.

Every import counts: at module level, inside functions, and under TYPE_CHECKING. The rooms
still to come (`service/guard/`, `service/feedback/`) are in the table, so their rules hold
from their first file. A module under service/ that belongs to no room fails the test: put
it in a room (or in SHARED if every room may use it).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SHARED = (
    "service.label_bounds",  # the one label policy
    "service.metric_families",  # the one list of metric families
    "service.log_throttle",
    "service.log_setup",
    "service.version",
)
"""Modules every room may import; they import no room (and only each other)."""

COMPOSITION = ("service.app", "service.cli", "service.config", "service.listeners", "service")
"""The composition root and the command line: they may import every room."""

# room -> what it may import besides itself and SHARED (module prefixes).
ALLOWED: dict[str, tuple[str, ...]] = {
    "detectors": (),
    "service.store": (),
    "service.oip": (),
    "service.dataplane": (),
    "service.alerting": ("service.store",),
    "service.monitor": (
        "detectors", "service.oip", "service.store", "service.alerting",
        "service.dataplane.observation",
    ),
    "service.guard": (
        "detectors", "service.oip", "service.alerting", "service.dataplane.observation",
    ),
    "service.feedback": (
        "detectors", "service.oip", "service.store", "service.alerting",
        "service.dataplane.observation",
    ),
    "service.probes": ("service.oip", "service.alerting"),
    "service.hooks": ("service.alerting",),
    "service.admin": ("service.alerting", "service.hooks", "service.store"),
    "service.modelserver": ("service.oip",),
    "service.demo": ("service.config", "service.monitor", "service.modelserver", "service.oip"),
}
"""DESIGN.md's table of rooms and what each may import.

Dependencies run one way: relay (dataplane) -> monitor / guard / feedback / probes ->
alerting -> hooks; admin serves the rooms at the end of that path. The sources of readings
may use the data plane's observation contract, nothing else of it.
"""

# Third-party packages a room may not import at all (the detectors: numpy and scipy only).
DETECTORS_MAY_USE = ("numpy", "scipy")
PURE_MODULES = ("service.alerting.rules", "service.alerting.conditions")
"""The rule engine: a pure state machine (no threads, clock, logging or I/O)."""
PURE_MAY_USE = ("__future__", "collections", "dataclasses", "fnmatch", "math", "types",
                "typing", "service.alerting")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files() -> dict[str, Path]:
    files = [*ROOT.glob("service/**/*.py"), *ROOT.glob("detectors/**/*.py")]
    return {module_name(path): path for path in files}


MODULES = python_files()


def imports_of(module: str) -> Iterator[str]:
    """Every module `module` imports (absolute names), wherever the import statement is."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            yield from submodules  # `from service import metric_families`
            if len(submodules) < len(node.names):
                yield base


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def room_of(module: str) -> str | None:
    if any(within(module, shared) for shared in SHARED):
        return "shared"
    if module in COMPOSITION:
        return "composition"
    return next((room for room in ALLOWED if within(module, room)), None)


def internal_imports() -> Iterator[tuple[str, str]]:
    for module in MODULES:
        for target in imports_of(module):
            if target in MODULES and target != module:
                yield module, target


def test_every_module_belongs_to_a_room() -> None:
    homeless = sorted(module for module in MODULES if room_of(module) is None)
    assert homeless == [], "add these to a room in tests/test_import_rules.py (or SHARED)"


def test_rooms_import_only_what_the_table_allows() -> None:
    wrong = []
    for module, target in internal_imports():
        room, target_room = room_of(module), room_of(target)
        if room == target_room or room == "composition" and target != "service.app":
            continue
        if target == "service.app" and module == "service.cli":
            continue  # `outrider serve` starts the app
        if target_room == "shared" and room != "shared" and target != "service.app":
            continue
        assert room is not None
        if any(within(target, allowed) for allowed in ALLOWED.get(room, ())):
            continue
        wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_table_itself_runs_one_way() -> None:
    def rooms_reached(room: str, path: tuple[str, ...]) -> None:
        for allowed in ALLOWED[room]:
            target = next((r for r in ALLOWED if within(allowed, r)), None)
            if target is None:
                continue  # the configuration (service.config), for the demo's tools
            assert target not in path, f"the table has a cycle: {' -> '.join((*path, target))}"
            rooms_reached(target, (*path, target))

    for room in ALLOWED:
        rooms_reached(room, (room,))


def test_no_module_imports_itself_through_others() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, target in internal_imports():
        graph[module].add(target)
    cycles = [sorted(component) for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (the import graph is deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "detectors")))
def test_detectors_use_numpy_and_scipy_only(module: str) -> None:
    outside = {
        target for target in imports_of(module)
        if not within(target, "detectors")
        and target.split(".")[0] not in sys.stdlib_module_names
        and not any(within(target, allowed) for allowed in DETECTORS_MAY_USE)
    }
    assert outside == set()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_the_rule_engine_is_pure(module: str) -> None:
    impure = {
        target for target in imports_of(module)
        if not any(within(target, allowed) for allowed in PURE_MAY_USE)
    }
    assert impure == set()


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """The checks above, on imports this table forbids."""
    monitor_may = ALLOWED["service.monitor"]
    assert not any(within("service.hooks.events", allowed) for allowed in monitor_may)
    assert room_of("service.guard.fingerprints") == "service.guard"
    assert room_of("service.app") == "composition"
    assert "service.app" not in ALLOWED["service.admin"]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, _strongly_connected(graph))) == [["a", "b", "c"], ["d"]]
