"""The Compose file's cluster shape, read as Compose would read it (Docker may not run where the tests do):
it parses, every gateway instance shares the database, paging key, export folder and Dask scheduler, and
the commands name the ports and addresses the rest of the file expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"


def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert data["name"] == "fhir-gateway"
    return dict(data["services"])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_two_gateway_instances_share_database_paging_key_exports_and_executor() -> None:
    svc = services()
    assert {"postgres", "gateway", "gateway-2", "dask-scheduler", "dask-worker"} <= set(svc)
    a, b = svc["gateway"], svc["gateway-2"]
    shared = ("GATEWAY_DATABASE_URL", "GATEWAY_PAGING_KEY", "GATEWAY_EXPORT_DIR", "GATEWAY_EXECUTOR")
    assert all(a["environment"][k] == b["environment"][k] for k in shared)
    assert a["environment"]["GATEWAY_EXPORT_DIR"].startswith("/data/")  # on the volume both mount
    assert {v.split(":")[1] for v in a["volumes"]} == {v.split(":")[1] for v in b["volumes"]} == {"/data"}
    ports = {option(s["command"], "--port") for s in (a, b)}
    assert len(ports) == 2  # one host network: each instance on its own port
    for s in (a, b):
        assert f":{option(s['command'], '--port')}/fhir" in s["environment"]["GATEWAY_BASE_URL"]
    assert "--demo" in a["command"] and "--demo" not in b["command"]  # the demo is loaded once
    assert b["depends_on"]["gateway"]["condition"] == "service_healthy"  # after the first one migrated
    assert "8081" in " ".join(b["healthcheck"]["test"])  # the image's own check asks 8080
    # the database URL names the port PostgreSQL is published on
    published = svc["postgres"]["ports"][0].split(":")[1]
    assert f"@127.0.0.1:{published}/" in a["environment"]["GATEWAY_DATABASE_URL"]


def test_the_dask_worker_and_the_gateways_use_the_scheduler_address() -> None:
    svc = services()
    scheduler = svc["dask-scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"]
    address = f"{option(scheduler, '--host')}:{option(scheduler, '--port')}"
    worker = svc["dask-worker"]["command"]
    assert worker[:2] == ["dask", "worker"] and worker[2] == f"tcp://{address}"
    assert svc["gateway"]["environment"]["GATEWAY_EXECUTOR"] == f"dask://{address}"
    # the image the Dask services run has the extra that provides the dask command
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert '"/tmp/src[dask]"' in dockerfile
