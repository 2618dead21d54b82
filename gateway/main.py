"""ASGI entry point: ``uvicorn gateway.main:build_app --factory`` builds the app from GATEWAY_* settings."""

from __future__ import annotations

from fastapi import FastAPI

from .app import create_app
from .config import Settings


def build_app() -> FastAPI:
    from .logs import configure

    settings = Settings()
    configure(settings.log_level)
    return create_app(settings)
