"""Several `fhir-gateway serve` processes on one PostgreSQL database, each on its own free port: the shape of
a deployment behind a load balancer, started and stopped by the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import own_pg_database, require_pg
from tests.test_live_server import LiveServer, start_server, stop_server

START_TIMEOUT = 120.0


@dataclass
class Cluster:
    """The servers of one cluster, the database they share, and how to start them again."""

    database: str
    workdir: Path
    auth: str | None = "off"
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    servers: list[LiveServer] = field(default_factory=list)

    def start(self, index: int | None = None) -> LiveServer:
        """Start one more server (or start server ``index`` again after it was stopped), in its own folder."""
        i = len(self.servers) if index is None else index
        folder = self.workdir / f"instance-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        server = start_server(self.database, folder, demo=False, auth=self.auth, timeout=START_TIMEOUT,
                              env=self.env, args=self.args)
        if index is None:
            self.servers.append(server)
        else:
            self.servers[index] = server
        return server

    def stop(self, index: int) -> None:
        stop_server(self.servers[index])

    def stop_all(self) -> None:
        for s in self.servers:
            stop_server(s)

    @property
    def bases(self) -> list[str]:
        return [s.base for s in self.servers]


@contextmanager
def pg_cluster(workdir: Path, instances: int = 2, auth: str | None = "off", env: dict[str, str] | None = None,
               args: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """``instances`` servers on a new PostgreSQL database of their own (dropped afterwards); the first one
    migrates the schema before the others start, as an operator's first rollout would."""
    require_pg("cluster tests")
    with own_pg_database("gw_cluster") as url:
        cluster = Cluster(url, workdir, auth, dict(env or {}), args)
        try:
            for _ in range(instances):
                cluster.start()
            yield cluster
        finally:
            cluster.stop_all()
