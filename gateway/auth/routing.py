"""The app's HTTP routes as (method, template) pairs with compiled matchers, read from the app's own router
through FastAPI's public ``iter_route_contexts`` (which also sees into included routers). The auth middleware
uses this to know which route will serve a request before it runs; the tests use it to walk every route.

Reading the live router (rather than a list the app keeps as it registers routes) keeps the check fail-closed:
a route added by any means is seen, and one without a policy is refused (``policy.classify``). Operation
routes are registered from the operation registry only (the declarations ``gateway/app.py`` collects)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path


@dataclass(frozen=True)
class RouteEntry:
    path: str
    methods: frozenset[str]
    regex: re.Pattern[str]


def iter_routes(routes: list[Any]) -> Iterator[tuple[str, frozenset[str]]]:
    """(template, methods) of every route; templates without the FHIR path convertors (api/paths.py)."""
    for path, methods in iter_raw_routes(routes):
        yield template(path), methods


def template(path: str) -> str:
    """A route path without its convertors: `/{rtype:fhirtype}/{rid:fhirid}` -> `/{rtype}/{rid}`."""
    return compile_path(path)[1]


def iter_raw_routes(routes: list[Any]) -> Iterator[tuple[str, frozenset[str]]]:
    """(path with convertors, methods) of every route, in matching order."""
    for ctx in iter_route_contexts(routes):
        route = ctx.original_route
        if hasattr(route, "routes") and not hasattr(route, "methods"):  # mounts and plain routers
            prefix = getattr(route, "path", "")
            for path, methods in iter_raw_routes(route.routes):
                yield prefix + path, methods
        elif ctx.path is not None:
            yield ctx.path, frozenset(ctx.methods or set())


class RouteTable:
    """Routes in registration order, bucketed by their number of path segments (a ``{param}`` never spans a
    ``/``; templates with ``:path`` parameters are tried for every length)."""

    def __init__(self) -> None:
        self._entries: list[RouteEntry] = []
        self._buckets: dict[int, list[RouteEntry]] = {}
        self._key: Any = None

    def entries(self, app: Any) -> list[RouteEntry]:
        key = (id(app), len(app.router.routes))
        if key != self._key:
            self._entries = [RouteEntry(fmt, m, regex) for p, m in iter_raw_routes(app.router.routes)
                             for regex, fmt, _ in (compile_path(p),)]
            self._buckets = {}
            self._key = key
        return self._entries

    def _candidates(self, app: Any, path: str) -> list[RouteEntry]:
        entries = self.entries(app)
        n = path.count("/")
        bucket = self._buckets.get(n)
        if bucket is None:
            bucket = [e for e in entries if ":path}" in e.path or e.path.count("/") == n]
            self._buckets[n] = bucket
        return bucket

    def match(self, app: Any, path: str, method: str) -> tuple[str | None, dict[str, str], bool]:
        """(template, path params, matched the path with another method only)."""
        other = False
        for e in self._candidates(app, path):
            m = e.regex.match(path)
            if m is None:
                continue
            if method in e.methods:
                return e.path, m.groupdict(), False
            other = True
        return None, {}, other
