"""The package layering of gateway/ (docs/architecture.md, "Layers"), checked on the import graph built from
the source: every import statement counts, also those inside functions, under TYPE_CHECKING and in files
that are not importable modules (the alembic environment). `make test` also runs import-linter on the same
contract from pyproject.toml; this test needs no installed tool and sees the migration scripts as well."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "gateway"
Edge = tuple[str, str]


def _module_name(path: Path, root: Path = GATEWAY) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, root: Path) -> list[str]:
    """The gateway modules (or packages) one import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        target = node.module or ""
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    out = []
    for alias in node.names:  # `from pkg import x` names the module pkg.x when there is one, else pkg
        path = root.parent.joinpath(*f"{target}.{alias.name}".split("."))
        out.append(f"{target}.{alias.name}" if path.with_suffix(".py").is_file() or path.is_dir() else target)
    return out


def module_graph(root: Path = GATEWAY) -> dict[Edge, list[int]]:
    """(importer, imported) -> line numbers, for every import of a gateway module by a gateway file."""
    edges: dict[Edge, list[int]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, module, path.name == "__init__.py", root):
                    if target == "gateway" or target.startswith("gateway."):
                        edges[(module, target)].append(node.lineno)
    return edges


def package_of(module: str) -> str:
    """The layer unit a module belongs to: `gateway.<package>` or a top-level module such as gateway.cli."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return contract


def _ignored() -> set[Edge]:
    out = set()
    for item in _contract().get("ignore_imports", []):
        a, b = (s.strip() for s in item.split("->"))
        out.add((a, b))
    return out


def _covers(ignored: Edge, edge: Edge) -> bool:
    a, b = ignored
    return edge[0] == a and (edge[1] == b or edge[1].startswith(b + "."))


def package_graph(edges: dict[Edge, list[int]], ignored: set[Edge]) -> dict[Edge, list[str]]:
    """(package, package) -> the module imports behind it, without the contract's named exceptions."""
    out: dict[Edge, list[str]] = defaultdict(list)
    for (a, b), lines in edges.items():
        if any(_covers(i, (a, b)) for i in ignored):
            continue
        pa, pb = package_of(a), package_of(b)
        if pa != pb and pb != "gateway":  # `gateway` itself holds only the version constants
            out[(pa, pb)].extend(f"{a} -> {b} (line {n})" for n in lines)
    return out


def cycles(graph: dict[Edge, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan), each sorted."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in graph:
        succ[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(succ) | {b for _, b in graph}):
        if v not in index:
            visit(v)
    return found


def _layers() -> list[tuple[list[str], bool]]:
    """The contract's layers, highest first: (packages, independent)."""
    out = []
    for raw in _contract()["layers"]:
        sep = "|" if "|" in raw else ":"
        out.append(([f"gateway.{p.strip()}" for p in raw.split(sep)], sep == "|" or ":" not in raw))
    return out


def test_the_module_graph_sees_imports_inside_functions_and_migrations() -> None:
    edges = module_graph()
    # a function-level import (the population runner opens the SQL store in each worker process)
    assert ("gateway.deqm.population", "gateway.store.sql.store") in edges
    # a migration script, which is no importable module but runs with the package
    assert ("gateway.store.sql.migrations.env", "gateway.store.sql.auth_tables") in edges


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph(module_graph(), _ignored())
    found = cycles(graph)
    detail = []
    for component in found:
        members = set(component)
        for (a, b), why in sorted(graph.items()):
            if a in members and b in members:
                detail.append(f"{a} -> {b}: {why[0]}")
    assert not found, "import cycles between packages: " + "; ".join(detail)


def test_every_package_has_a_layer() -> None:
    named = {p for packages, _ in _layers() for p in packages}
    present = {package_of(_module_name(p)) for p in GATEWAY.rglob("*.py")} - {"gateway"}
    assert present - named == set(), "packages outside the layers contract in pyproject.toml"
    assert named - present == set(), "layers naming packages that do not exist"


def test_each_package_imports_only_from_lower_layers() -> None:
    rank: dict[str, int] = {}
    independent: dict[str, bool] = {}
    for i, (packages, indep) in enumerate(_layers()):
        for p in packages:
            rank[p] = i
            independent[p] = indep
    wrong = []
    for (a, b), why in sorted(package_graph(module_graph(), _ignored()).items()):
        if rank[a] > rank[b] or (rank[a] == rank[b] and independent[a]):
            wrong.append(f"{a} -> {b}: {why[0]}")
    assert wrong == []


@pytest.mark.parametrize("graph, expected", [
    ({("gateway.a", "gateway.b"): ["x"], ("gateway.b", "gateway.c"): ["x"], ("gateway.c", "gateway.a"): ["x"]},
     [["gateway.a", "gateway.b", "gateway.c"]]),
    ({("gateway.a", "gateway.b"): ["x"], ("gateway.b", "gateway.c"): ["x"]}, []),
])
def test_cycle_finder(graph: dict[Edge, list[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_a_hidden_import_inside_a_function_is_a_cycle(tmp_path: Path) -> None:
    """The check sees what the starting tree hid: a kernel module importing a service inside a function."""
    pkg = tmp_path / "gateway"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "high" / "svc.py").write_text("from ..low import util\n")
    (pkg / "low" / "util.py").write_text("def f():\n    from ..high.svc import g\n    return g\n")
    edges = module_graph(pkg)
    assert ("gateway.low.util", "gateway.high.svc") in edges
    assert cycles(package_graph(edges, set())) == [["gateway.high", "gateway.low"]]
