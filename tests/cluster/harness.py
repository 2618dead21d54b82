"""Several `fhir-gateway serve` processes on one PostgreSQL database, each on its own free port: the shape of
a deployment behind a load balancer, started and stopped by the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.sql.store import SqlStore
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

    def launch(self, index: int) -> LiveServer:
        """Start the server of slot ``index`` in its own folder and return it, once it answers."""
        folder = self.workdir / f"instance-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        return start_server(self.database, folder, demo=False, auth=self.auth, timeout=START_TIMEOUT,
                            env=self.env, args=self.args)

    def start(self, index: int) -> LiveServer:
        """Start server ``index`` again after it was stopped."""
        self.servers[index] = server = self.launch(index)
        return server

    def start_all(self, count: int | None = None) -> None:
        """Start ``count`` servers (default: again as many as there were), side by side."""
        n = len(self.servers) if count is None else count
        with ThreadPoolExecutor(n) as pool:
            self.servers = list(pool.map(self.launch, range(n)))

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
    """``instances`` servers on a new PostgreSQL database of their own (dropped afterwards). The schema is
    migrated first (as an operator's first rollout would, with `fhir-gateway migrate`), then the servers
    start side by side."""
    require_pg("cluster tests")
    with own_pg_database("gw_cluster") as url:
        SqlStore(url).close()  # migrates
        cluster = Cluster(url, workdir, auth, dict(env or {}), args)
        try:
            cluster.start_all(instances)
            yield cluster
        finally:
            cluster.stop_all()
