"""FastAPI dependencies: the wired services live on app.state and come in through these aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from ..resources.rest import RestService


async def get_rest(request: Request) -> RestService:
    return request.app.state.rest


async def get_settings_dep(request: Request) -> Any:
    return request.app.state.settings


Rest = Annotated[RestService, Depends(get_rest)]
Settings = Annotated[Any, Depends(get_settings_dep)]
