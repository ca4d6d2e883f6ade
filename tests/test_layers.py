"""分层 No module of jingfang, registry or schedules is in an import cycle (docs/ARCHITECTURE.md "Layers").

The layers themselves are the import-linter contract in pyproject.toml (``lint-imports``, run by
scripts/test before pytest); this adds what a layers contract leaves open: inside a layer the
imports form no cycle either. Imports inside functions count (grimp reads every import statement);
imports under ``if TYPE_CHECKING:`` never run and do not.
"""

from __future__ import annotations

import sys

import grimp

PACKAGES = ("jingfang", "registry", "schedules")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle through each group of modules that import each other (a strongly connected
    component of more than one module), as ``[a, b, …, a]`` starting at the group's first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    imports = {m: sorted(graph.find_modules_directly_imported_by(m) - {m}) for m in graph.modules}

    for root in sorted(graph.modules):  # Tarjan's algorithm, iterative (no recursion limit)
        if root in index:
            continue
        work = [(root, iter(imports[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(imports[child])))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    cycles = []
    for group in sorted(groups):
        first = group[0]
        nxt = next(m for m in imports[first] if m in group)
        back = graph.find_shortest_chain(importer=nxt, imported=first)
        cycles.append([first, *back])
    return cycles


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    steps = []
    for importer, imported in zip(cycle, cycle[1:]):
        lines = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)})
        steps.append(f"  {importer} -> {imported} (l.{', '.join(map(str, lines))})")
    return "\n".join(steps)


def test_no_module_is_in_an_import_cycle():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    cycles = import_cycles(graph)
    assert not cycles, "modules in an import cycle:\n" + "\n\n".join(describe(graph, c) for c in cycles)


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path, monkeypatch):
    """The check itself: a planted cycle, closed by an import inside a function, is reported."""
    package = tmp_path / "cyclic_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def late():\n    from cyclic_probe import high\n    return high\n")
    (package / "mid.py").write_text("from cyclic_probe import low\n")
    (package / "high.py").write_text("from cyclic_probe import mid\n")
    # a cycle closed only under TYPE_CHECKING never runs: not reported
    (package / "annotated.py").write_text("from cyclic_probe import annotations_only\n")
    (package / "annotations_only.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyclic_probe import annotated\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic_probe", exclude_type_checking_imports=True, cache_dir=None)
    cycles = import_cycles(graph)
    assert cycles == [["cyclic_probe.high", "cyclic_probe.mid", "cyclic_probe.low", "cyclic_probe.high"]]
    assert "cyclic_probe.low -> cyclic_probe.high (l.2)" in describe(graph, cycles[0])
    sys.modules.pop("cyclic_probe", None)
