"""Who is calling: the authenticated client's id, once authentication has put it on the request."""

from __future__ import annotations

from fastapi import Request


def request_client_id(request: Request) -> str | None:
    """The client id set on ``request.state.client_id`` by the authentication layer; None without one."""
    value = getattr(request.state, "client_id", None)
    return str(value) if value is not None else None
