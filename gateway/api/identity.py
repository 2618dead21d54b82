"""Who is calling: the authenticated client's id, once authentication has put it on the request."""

from __future__ import annotations

from fastapi import Request


def request_client_id(request: Request) -> str | None:
    """The client id set on ``request.state.client_id`` by the authentication layer; None without one."""
    value = getattr(request.state, "client_id", None)
    return str(value) if value is not None else None


def request_subject(request: Request) -> str | None:
    """The subject (token ``sub``: the signed-in user, or a backend client itself) of the grant the
    authentication layer put on ``request.state``; None without one (authorization off)."""
    grant = getattr(request.state, "grant", None)
    value = getattr(grant, "subject", None)
    return str(value) if value is not None else None
