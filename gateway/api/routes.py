"""FHIR operation routes, built from the operation registry.

``router()`` registers one route per (method, path) the registry declares, pointing at
the handler the declaration names, with the declaration's summary and description as its OpenAPI docs.
Handler modules hold no route decorators, so an operation cannot be served without being declared (and so
without a policy and a CapabilityStatement entry), and every declaration is served."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..operations import Registry, Route

API_PACKAGE = "gateway"


def handler(route: Route) -> Callable[..., Any]:
    """The function a declared route names (``module:function`` under gateway)."""
    module, _, name = route.endpoint.handler.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(f"{API_PACKAGE}.{module}"), name)
    return fn


def router(registry: Registry) -> APIRouter:
    """An APIRouter with every route the registry declares, in declaration order (the registry the app
    assembly collected from the capability packages)."""
    out = APIRouter()
    for route in registry.routes.values():
        op = route.operation
        level = route.endpoint.level
        out.add_api_route(route.path, handler(route), methods=[route.method], tags=list(op.tags),
                          summary=f"{op.summary} ({level} level, {route.method})", description=op.description(),
                          name=f"{op.key}:{level}:{route.method.lower()}:{route.path}")
    return out
