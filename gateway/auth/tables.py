"""The authorization server's tables, as the auth package names them. They are defined in the store layer
(`gateway/store/sql/auth_tables.py`) so the migrations, which register every table, never import `auth`."""

from __future__ import annotations

from ..store.sql.auth_tables import (
    AUDIT,
    CLIENT,
    CODE,
    FAILURE,
    JTI,
    KEY,
    LAUNCH,
    TOKEN,
    USER,
    AuditLog,
    AuthClient,
    AuthCode,
    AuthFailure,
    AuthJti,
    AuthKey,
    AuthLaunch,
    AuthToken,
    AuthUser,
)

__all__ = ["AUDIT", "CLIENT", "CODE", "JTI", "KEY", "LAUNCH", "TOKEN", "USER", "AuditLog", "AuthClient",
           "AuthCode", "AuthJti", "AuthKey", "AuthLaunch", "AuthToken", "AuthUser", "FAILURE", "AuthFailure"]
