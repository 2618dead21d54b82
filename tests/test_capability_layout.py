"""The package-per-capability layout (docs/architecture.md, "Where things live"): each operation is declared
once, in the folder that also holds its handler, and the app assembly serves exactly the declared ones."""

from __future__ import annotations

import importlib
from pathlib import Path

from gateway.app import REGISTRY
from gateway.operations import Operation

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"


def _declaration_modules() -> dict[str, tuple[Operation, ...]]:
    """Every declarations module under gateway/ (``<capability>/declarations.py`` and
    ``<capability>/<operation>/declaration.py``) -> the operations it lists."""
    out = {}
    for path in sorted([*GATEWAY.glob("*/declarations.py"), *GATEWAY.glob("*/*/declaration.py")]):
        name = ".".join(path.relative_to(GATEWAY.parent).with_suffix("").parts)
        out[name] = importlib.import_module(name).OPERATIONS
    return out


def _homes() -> dict[str, str]:
    """operation key -> the module that declares it: the deepest declarations module listing it (a
    capability's ``declarations.py`` may gather the ones of its operation folders)."""
    homes: dict[str, str] = {}
    for module, ops in _declaration_modules().items():
        for op in ops:
            if op.key not in homes or module.count(".") > homes[op.key].count("."):
                homes[op.key] = module
    return homes


def _folder(module: str) -> Path:
    return GATEWAY.parent.joinpath(*module.split(".")).parent


def test_the_registry_is_exactly_the_declared_operations() -> None:
    homes = _homes()
    assert sorted(homes) == sorted(op.key for op in REGISTRY)
    for module, ops in _declaration_modules().items():  # the same object wherever it is listed: declared once
        for op in ops:
            assert REGISTRY.by_key[op.key] is op, (module, op.key)


def test_every_handler_sits_in_the_folder_of_its_declaration() -> None:
    homes = _homes()
    misplaced = []
    for op in REGISTRY:
        for endpoint in op.endpoints:
            handler_module = endpoint.handler.partition(":")[0]
            handler_file = GATEWAY.joinpath(*handler_module.split(".")).with_suffix(".py")
            assert handler_file.is_file(), endpoint.handler
            if handler_file.parent != _folder(homes[op.key]):
                misplaced.append(f"{op.key}: {endpoint.handler} is not beside {homes[op.key]}")
    assert misplaced == []


def test_care_gaps_lives_in_one_folder() -> None:
    """The issue's example: a newcomer finds $care-gaps' declaration, handler and use case together."""
    folder = GATEWAY / "deqm" / "care_gaps"
    assert {p.name for p in folder.glob("*.py")} >= {"declaration.py", "handler.py", "service.py"}
    homes = _homes()
    assert homes["care-gaps"] == homes["care-gaps-status"] == "gateway.deqm.care_gaps.declaration"
    assert {e.handler.partition(":")[0] for e in REGISTRY.by_key["care-gaps"].endpoints} == {
        "deqm.care_gaps.handler"}


def test_no_grab_bag_package_is_left() -> None:
    assert not (GATEWAY / "services").exists()
    assert not (GATEWAY / "api" / "operations").exists()
