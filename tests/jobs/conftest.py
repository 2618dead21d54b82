"""The database fixture of the job-core tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for the instances: a SQLite file, or a PostgreSQL database of its own."""
    with own_database(request.param, tmp_path, "jobs") as url:
        yield url
