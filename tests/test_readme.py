"""Every command block of README.md, executed (issue 14, item 9), as far as a test can:

- the set-up block (``make run`` / ``make test``): both targets exist and ``make -n`` (a dry run: it
  prints the commands without running them) succeeds; the server command ``make run PORT=…`` prints is
  checked to be exactly the ``fhir-gateway serve`` the live server below is started with. The install
  steps and the whole-suite run of ``make test`` are not executed here (the suite would run itself).
- the curl walk-through: a live ``fhir-gateway serve --auth off --demo`` (what ``make run`` starts, on a
  free port and a database in a temporary folder) answers every command of the block, run by bash as
  written with only the port changed; each answers 2xx JSON of the kind the README says, the create says
  ``201`` with the Location the comment shows, and the bad-input example is a 400 OperationOutcome.
- the ``fhir-gateway load`` block and the eCQM block (load plus two ``$evaluate-measure`` calls): run as
  written against the same live server's database; they read the fixture corpus ``../shared``, so that
  test skips with the corpus's reason without it (and fails under CI=true).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, require_shared
from tests.test_live_server import LiveServer, free_port, start_server, stop_server

pytestmark = pytest.mark.live

README = ROOT / "README.md"
DOC_ROOT = "http://127.0.0.1:8080"


def blocks() -> list[str]:
    """The README's ```sh blocks, in order."""
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def block_with(marker: str) -> str:
    found = [b for b in blocks() if marker in b]
    assert len(found) == 1, f"one README block with {marker!r}, found {len(found)}"
    return found[0]


def commands(block: str) -> list[str]:
    """The block's commands: backslash continuations joined, comment lines dropped, a command running
    until the next line that starts a new one (a quoted JSON body may span lines)."""
    text = block.replace("\\\n", " ")
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^(curl|make|\.venv/bin/fhir-gateway) ", line):
            out.append(line)
        else:
            assert out, f"a README line outside any command: {line!r}"
            out[-1] += "\n" + line
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def live(workdir: Path) -> Iterator[LiveServer]:
    database = f"sqlite:///{workdir / 'var' / 'gateway.sqlite3'}"  # make run's default path, under workdir
    server = start_server(database, workdir, demo=True)
    try:
        yield server
    finally:
        stop_server(server)


def test_setup_block_make_targets_exist_and_dry_run(live: LiveServer) -> None:
    block = block_with("make run")
    cmds = [c.split("#")[0].strip() for c in commands(block)]
    assert cmds == ["make run", "make test"], cmds
    port = free_port()
    for target, extra in (("run", [f"PORT={port}"]), ("test", [])):
        done = subprocess.run(["make", "-n", target, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (target, done.stderr)
        assert done.stdout.strip(), target
    run = subprocess.run(["make", "-n", "run", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout.splitlines()
    serve = shlex.split(next(line for line in run if " serve " in line))
    # the server the walk-through below talks to is this command (plus --database for a temporary file)
    assert serve[0].endswith("fhir-gateway")
    assert serve[1:] == ["serve", "--host", "127.0.0.1", "--port", str(port), "--auth", "off", "--demo"]
    assert "--auth" in live.proc.args and "--demo" in live.proc.args  # type: ignore[operator]
    tests = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for step in ("ruff check", "mypy", "lint-imports", "pytest"):
        assert step in tests, step


def run_curl(command: str, live: LiveServer) -> tuple[str, int]:
    """Run one README curl command with bash as written (port changed), with curl told to add the status."""
    assert command.startswith("curl -s ")
    script = command.replace(DOC_ROOT, live.root).replace("curl -s ", "curl -s --max-time 120 -w '\\n%{http_code}' ", 1)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=150, env=clean_env())
    assert done.returncode == 0, (command, done.stderr[-2000:])
    if "| head" in command:  # the status went with the cut-off tail
        return done.stdout, 200
    body, _, code = done.stdout.rstrip("\n").rpartition("\n")
    return body, int(code)


def test_walk_through_block_runs_against_a_live_server(live: LiveServer) -> None:
    cmds = commands(block_with("# what the server supports"))
    assert len(cmds) >= 9 and all(c.startswith("curl ") for c in cmds)
    kinds = []
    for command in cmds:
        out, status = run_curl(command, live)
        if "| head" in command:
            assert out.startswith('{"resourceType":"CapabilityStatement"'), out[:200]
            kinds.append("CapabilityStatement")
            continue
        if " -i " in command:
            head, _, body = out.partition("\n\n")  # text mode turned CRLF into LF
            assert head.startswith("HTTP/1.1 201"), head
            location = next(v.strip() for k, _, v in (h.partition(":") for h in head.splitlines())
                            if k.lower() == "location")
            assert re.fullmatch(re.escape(live.base) + r"/Patient/[0-9a-f-]+/_history/1", location), location
            assert 'etag: w/"1"' in head.lower(), head
            out = body
        resource = json.loads(out)
        kinds.append(resource["resourceType"])
        if command is cmds[-1]:  # "bad input is an OperationOutcome with the right status"
            assert status == 400 and resource["resourceType"] == "OperationOutcome", (status, out[:500])
            assert resource["issue"][0]["severity"] == "error"
        else:
            assert 200 <= status < 300, (command, status, out[:1000])
            assert resource["resourceType"] != "OperationOutcome" or resource["issue"][0]["severity"] == "information"
    assert kinds == ["CapabilityStatement", "MeasureReport", "Bundle", "Bundle", "Patient", "Bundle", "Patient",
                     "Bundle", "Bundle", "OperationOutcome"], kinds


def run_gateway(command: str, live: LiveServer, workdir: Path) -> str:
    """Run a README ``.venv/bin/fhir-gateway`` command as written, from the checkout (its relative paths:
    .venv and ../shared), on the live server's database."""
    env = clean_env() | {"GATEWAY_DATABASE_URL": f"sqlite:///{workdir / 'var' / 'gateway.sqlite3'}"}
    exe = ROOT / ".venv" / "bin" / "fhir-gateway"
    if not exe.exists():  # an environment elsewhere: the console script of the running interpreter
        command = command.replace(".venv/bin/fhir-gateway", shlex.quote(str(Path(sys.executable).parent
                                                                               / "fhir-gateway")), 1)
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def test_load_and_ecqm_blocks_run_against_the_same_database(live: LiveServer, workdir: Path) -> None:
    require_shared()
    load = commands(block_with("fhir-gateway load ../shared/examples/deqm"))
    assert len(load) == 1
    run_gateway(load[0], live, workdir)
    ecqm = commands(block_with("CMS130"))
    assert [c.split()[0] for c in ecqm] == [".venv/bin/fhir-gateway", "curl", "curl"]
    run_gateway(ecqm[0], live, workdir)
    reports = []
    for command in ecqm[1:]:
        out, status = run_curl(command, live)
        assert status == 200, (command, out[:1000])
        reports.append(json.loads(out))
    subject, population = reports
    assert subject["resourceType"] == population["resourceType"] == "MeasureReport"
    assert subject["type"] == "individual" and subject["subject"]["reference"].endswith(
        "007ec5f1-08cf-474a-a472-f6a92cca4b79")
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in population["group"][0]["population"]}
    assert counts.get("initial-population", 0) >= 1, counts
