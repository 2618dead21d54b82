"""docs/guides/provider-access.md runs as written against a live gateway (authorization on) on SQLite and
PostgreSQL: its ``sh`` blocks (the payer's administration, on the gateway's database) and its ``python``
blocks (the provider's system: key, token, member match, Group, export, poll, download, opt-out, bad input)
in document order; the blocks' own assertions check each step, and this test checks the outcome again."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env, gateway_exe, own_database
from tests.test_live_server import start_server, stop_server

GUIDE = ROOT / "docs" / "guides" / "provider-access.md"
DOC_ROOT = "http://127.0.0.1:8080"


def blocks() -> list[tuple[str, str]]:
    """The guide's (language, code) blocks, sh and python, in order."""
    return re.findall(r"```(sh|python)\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with own_database(request.param, tmp_path, "payer", "the Provider Access guide on PostgreSQL") as url:
        yield url


def test_the_provider_access_guide_runs(database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = blocks()
    assert [lang for lang, _ in code].count("python") >= 6 and len(code) >= 9
    server = start_server(database, tmp_path, demo=False, auth="smart", timeout=120,
                          env={"GATEWAY_EXPORT_DIR": str(tmp_path / "export")})
    env = {**clean_env(), "GATEWAY_DATABASE_URL": database,
           "PATH": f"{Path(gateway_exe()).parent}{os.pathsep}{clean_env().get('PATH', '')}"}
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {"__name__": "guide"}
    try:
        for lang, text in code:
            text = text.replace(DOC_ROOT, server.root)
            if lang == "sh":
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], capture_output=True, text=True,
                                      env=env, cwd=tmp_path, timeout=120)
                assert done.returncode == 0, (text, done.stdout[-2000:], done.stderr[-2000:])
            else:
                exec(compile(text, str(GUIDE), "exec"), scope)  # noqa: S102 - the guide's own code
    finally:
        stop_server(server)
    assert sorted(m["entity"]["reference"] for m in scope["group"]["member"]) == ["Patient/ann", "Patient/bo"]
    assert [p["id"] for p in scope["files"]["Patient"]] == ["ann"]  # Bo opted out after the match
    assert scope["manifest"]["error"] and "cy" not in str(scope["files"])
