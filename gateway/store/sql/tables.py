"""Table definitions (sqlmodel). Resources are versioned JSON documents; index tables are filled on write.

- ``resource``: the current version of every resource (deleted ones kept as tombstones).
- ``resource_history``: every version ever written, including deletes (content null).
- ``idx_*``: one table per search parameter type, keyed by the resource's surrogate ``res_pk``.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Table, UniqueConstraint
from sqlmodel import Field, SQLModel


def table_of(model: type[SQLModel]) -> Table:
    """The Table of a sqlmodel table class. sqlmodel sets `__table__` when the class is created but does not
    declare it, so reading it through the class dict keeps the SQLAlchemy type visible to mypy."""
    table = model.__dict__["__table__"]
    assert isinstance(table, Table)
    return table


class Resource(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
        Index("ix_resource_type_updated", "res_type", "last_updated"),
    )
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045 - sqlmodel needs Optional
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=255)  # R4 allows 64; lenient loads keep longer ids
    version: int
    last_updated: str = Field(max_length=30)  # FHIR instant, UTC, ms precision: sorts as text
    deleted: bool = False
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ResourceHistory(SQLModel, table=True):
    __tablename__ = "resource_history"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", "version", name="uq_history_version"),
        Index("ix_history_updated", "last_updated"),
        Index("ix_history_type_updated", "res_type", "last_updated"),
    )
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=255)  # R4 allows 64; lenient loads keep longer ids
    version: int
    last_updated: str = Field(max_length=30)
    method: str = Field(max_length=8)  # POST PUT DELETE PATCH
    content: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # noqa: UP045


class _IndexRow(SQLModel):
    """Columns every index table has: its own key, the indexed resource's key and type, the parameter code."""

    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    res_pk: int = Field(index=True)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=100)


class IdxString(_IndexRow, table=True):
    __tablename__ = "idx_string"
    __table_args__ = (Index("ix_idx_string_q", "res_type", "param", "value"),)
    value: str = Field(max_length=255)
    exact: str = Field(max_length=255)


class IdxToken(_IndexRow, table=True):
    __tablename__ = "idx_token"
    __table_args__ = (Index("ix_idx_token_q", "res_type", "param", "code", "system"),)
    system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    text: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045


class IdxDate(_IndexRow, table=True):
    __tablename__ = "idx_date"
    __table_args__ = (Index("ix_idx_date_q", "res_type", "param", "lo", "hi"),)
    lo: str = Field(max_length=26)
    hi: str = Field(max_length=26)


class IdxRef(_IndexRow, table=True):
    __tablename__ = "idx_ref"
    __table_args__ = (
        Index("ix_idx_ref_q", "res_type", "param", "target_id", "target_type"),
        Index("ix_idx_ref_target", "target_type", "target_id"),
    )
    target_type: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    target_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    url: Optional[str] = Field(default=None, max_length=512)  # noqa: UP045


class IdxNumber(_IndexRow, table=True):
    __tablename__ = "idx_number"
    __table_args__ = (Index("ix_idx_number_q", "res_type", "param", "value"),)
    value: float
    system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045


class IdxUri(_IndexRow, table=True):
    __tablename__ = "idx_uri"
    __table_args__ = (Index("ix_idx_uri_q", "res_type", "param", "value"),)
    value: str = Field(max_length=512)


class IdxComposite(_IndexRow, table=True):
    __tablename__ = "idx_composite"
    __table_args__ = (Index("ix_idx_composite_q", "res_type", "param", "code", "system"),)
    system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    text: Optional[str] = Field(default=None, max_length=512)  # noqa: UP045
    num: Optional[float] = None  # noqa: UP045
    lo: Optional[str] = Field(default=None, max_length=26)  # noqa: UP045
    hi: Optional[str] = Field(default=None, max_length=26)  # noqa: UP045


class JobRow(SQLModel, table=True):
    """One asynchronous job of any kind (a Bulk export, an asynchronous $care-gaps, a bulk submission): its
    request, its owner (client and user), its progress checkpoint, its outcome, and the lease of the gateway
    instance running it (store/sql/jobs.py)."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_status", "status"),)
    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(default="export", max_length=32)  # export | care-gaps | bulk-submit
    status: str = Field(max_length=16)  # queued running complete failed cancelled
    client_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    subject: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - the token's sub that started it
    request_url: str = Field(max_length=2048)
    params: str  # the parsed request and the recorded grant (JSON)
    transaction_time: str = Field(max_length=30)
    created: str = Field(max_length=30)
    heartbeat: float = 0.0  # epoch seconds of the worker's last sign of life
    attempts: int = 0  # how many times a worker started (or resumed) the job
    progress: str = "{}"  # checkpoint, outputs and per-item outcomes (JSON)
    message: Optional[str] = None  # noqa: UP045 - the reason of a failure
    expires: Optional[float] = None  # noqa: UP045 - epoch seconds after which the job and its files go
    lease_owner: Optional[str] = Field(default=None, max_length=128)  # noqa: UP045 - the instance running it
    lease_expires: float = 0.0  # epoch seconds; past it another instance may take the job over
    result: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # noqa: UP045
    # ^ a small job's output (NDJSON), served by any instance


class FeedPosition(SQLModel, table=True):
    """How far a follower of the history change feed has got (store/sql/feed.py): the row number it has
    handled up to and its state (JSON: rows above ``position - lookback`` already handled, the first row it
    ever followed), written by the lease holder after each pass so a restart or another process goes on
    from there."""

    __tablename__ = "feed_position"
    name: str = Field(primary_key=True, max_length=64)
    position: int = Field(sa_column=Column(BigInteger, nullable=False))
    state: str = "{}"
    updated: float = 0.0  # epoch seconds of the last save



class IngestRunRow(SQLModel, table=True):
    """One ingest run (``fhir-gateway ingest`` or ``POST $ingest/<format>``): who ran it, the format and files,
    when, its counts, the first rejects (capped; ``rejected`` stays the exact count) and the whole
    data-quality report (JSON); read through the declared ``$ingest-runs`` operation (ingest/runs.py)."""

    __tablename__ = "ingest_run"
    __table_args__ = (Index("ix_ingest_run_started", "started"),)
    id: str = Field(primary_key=True, max_length=64)
    format: str = Field(max_length=32)
    via: str = Field(max_length=8)  # http | cli
    client_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - None: the local operator
    subject: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - the token's sub
    files: str = "[]"  # JSON list of file names
    strictness: Optional[str] = Field(default=None, max_length=16)  # noqa: UP045
    mapping_version: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    started: str = Field(max_length=30)
    ended: str = Field(max_length=30)
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # exact, whatever number of examples ``rejects`` keeps
    warned: int = 0  # units loaded with data-quality warnings
    rejects: str = "[]"  # JSON: the first rejects (file, line, where, reason, field)
    report: str = "{}"  # JSON: the data-quality report (IngestSummary.quality)


class SubscriptionDeliveryRow(SQLModel, table=True):
    """The last notification the notifier sent for a Subscription (subscriptions/notifier.py): when, what
    (handshake, heartbeat, event-notification), its outcome and the reason of a failure; read through
    ``Subscription/[id]/$notification-status`` once the store gate let the caller read the Subscription."""

    __tablename__ = "subscription_delivery"
    subscription_id: str = Field(primary_key=True, max_length=255)
    at: str = Field(max_length=30)  # FHIR instant, UTC
    kind: str = Field(max_length=32)
    outcome: str = Field(max_length=16)  # delivered | failed
    error: Optional[str] = None  # noqa: UP045
    sent: int = 0  # notifications sent for it so far


class ConsoleSessionRow(SQLModel, table=True):
    """A console sign-in (gateway/console/sessions.py), shared by every instance on the database: keyed by
    the SHA-256 of the cookie's secret (the secret itself is never stored), its tokens, PKCE verifier and
    CSRF token encrypted with a key derived from that same secret, so a copy of the table opens nothing."""

    __tablename__ = "console_session"
    __table_args__ = (Index("ix_console_session_expires", "expires"),)
    id_hash: str = Field(primary_key=True, max_length=64)
    username: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    fhir_user: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # Fernet token of the JSON secrets
    created: float = 0.0
    used: float = 0.0  # epoch seconds of the last use
    expires: float = 0.0  # epoch seconds: idle expiry (used + the idle lifetime), capped by the absolute one

RESOURCE = table_of(Resource)
HISTORY = table_of(ResourceHistory)
JOB = table_of(JobRow)
EXPORT_JOB = JOB  # the table was export_job before the job core (migration 0008)
FEED_POSITION = table_of(FeedPosition)
INGEST_RUN = table_of(IngestRunRow)
SUBSCRIPTION_DELIVERY = table_of(SubscriptionDeliveryRow)
CONSOLE_SESSION = table_of(ConsoleSessionRow)
IDX = {
    "strings": table_of(IdxString),
    "tokens": table_of(IdxToken),
    "dates": table_of(IdxDate),
    "refs": table_of(IdxRef),
    "numbers": table_of(IdxNumber),
    "uris": table_of(IdxUri),
    "composites": table_of(IdxComposite),
}
IDX_COLUMNS = {
    "strings": ("param", "value", "exact"),
    "tokens": ("param", "system", "code", "text"),
    "dates": ("param", "lo", "hi"),
    "refs": ("param", "target_type", "target_id", "url"),
    "numbers": ("param", "value", "system", "code"),
    "uris": ("param", "value"),
    "composites": ("param", "system", "code", "text", "num", "lo", "hi"),
}
metadata = SQLModel.metadata
