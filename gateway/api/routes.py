"""FHIR operations: one handler module per operation; the routes come from the registry.

``router()`` registers one route per (method, path) that ``gateway/operations.py`` declares, pointing at
the handler the declaration names, with the declaration's summary and description as its OpenAPI docs.
Handler modules hold no route decorators, so an operation cannot be served without being declared (and so
without a policy and a CapabilityStatement entry), and every declaration is served."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..operations import REGISTRY, Registry, Route

API_PACKAGE = "gateway"


def handler(route: Route) -> Callable[..., Any]:
    """The function a declared route names (``module:function`` under gateway)."""
    module, _, name = route.endpoint.handler.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(f"{API_PACKAGE}.{module}"), name)
    return fn


def router(registry: Registry = REGISTRY) -> APIRouter:
    """An APIRouter with every route the registry declares, in declaration order."""
    out = APIRouter()
    for route in registry.routes.values():
        op = route.operation
        level = route.endpoint.level
        out.add_api_route(route.path, handler(route), methods=[route.method], tags=list(op.tags),
                          summary=f"{op.summary} ({level} level, {route.method})", description=op.description(),
                          name=f"{op.key}:{level}:{route.method.lower()}:{route.path}")
    return out
