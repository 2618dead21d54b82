"""``fhir-gateway load`` end to end: the real console script in a subprocess, then the database read back with
SqlStore. Runs on a temporary SQLite file and on the session PostgreSQL database (``pg_url``).

Sources: the official DEQM and ATR examples and the eCQM corpus in ``../shared`` (read in place, never
copied), and the small hand-made files in ``tests/fixtures/load/``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.grant_record import OWNER_EXTENSION
from gateway.store.sql.store import SqlStore
from tests.conftest import SHARED, clean_env, gateway_exe, require_shared, wipe

LOAD_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "load"
MIXED = LOAD_FIXTURES / "mixed"
DEQM = SHARED / "examples" / "deqm"
ATR = SHARED / "examples" / "atr"
ECQM = SHARED / "testdata" / "ecqm"
CMS347_BUNDLE = ECQM / "CMS347" / "measure-bundle.json"
CMS122_TESTS = ECQM / "CMS122" / "tests"

SUMMARY_RE = re.compile(r"^Loaded (\d+) resources from (\d+) files \((\d+) errors, (\d+) warnings\)$", re.M)
# bundle types whose entries are loaded one by one, keeping their ids
ENTRY_BUNDLES = ("collection", "document", "searchset", "message", "history")


# -- running the console script ----------------------------------------------------------------------------






@dataclass
class LoadRun:
    returncode: int
    stdout: str
    stderr: str
    loaded: int
    files: int
    errors: int
    warnings: int

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("error: ")]

    @property
    def warning_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("warning: ")]

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-6000:]}"


def run_load(db_url: str, *args: str | Path, cwd: Path, quiet: bool = True) -> LoadRun:
    cmd = [gateway_exe(), "load", *map(str, args), "--database", db_url]
    if quiet:
        cmd.append("--quiet")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=600)
    m = SUMMARY_RE.search(proc.stdout)
    assert m, f"no summary line on stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
    loaded, files, errors, warnings = (int(g) for g in m.groups())
    return LoadRun(proc.returncode, proc.stdout, proc.stderr, loaded, files, errors, warnings)


# -- database fixture: one SQLite file per test, or the session PostgreSQL database, emptied ---------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'load.sqlite3'}"
        return
    url: str = request.getfixturevalue("pg_url")
    store = SqlStore(url)  # creates the schema when needed
    wipe(store)
    store.close()
    yield url
    store = SqlStore(url)
    wipe(store)  # leave the shared session database as the other tests expect it
    store.close()


@pytest.fixture()
def open_store() -> Iterator[list[SqlStore]]:
    """Stores opened by a test, closed at teardown."""
    opened: list[SqlStore] = []
    yield opened
    for s in opened:
        s.close()


def connect(url: str, opened: list[SqlStore]) -> SqlStore:
    store = SqlStore(url)
    opened.append(store)
    return store


# -- helpers on FHIR JSON ----------------------------------------------------------------------------------


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def meta_kept(resource: dict[str, Any]) -> dict[str, Any]:
    """meta minus what the server owns (versionId, lastUpdated, and a Subscription's owner record, which the
    gated store writes on every Subscription write: docs/security.md, "Subscription notifications")."""
    kept = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    extensions = [e for e in kept.get("extension") or [] if e.get("url") != OWNER_EXTENSION]
    if extensions:
        kept["extension"] = extensions
    else:
        kept.pop("extension", None)
    return kept


def stored_json(store: SqlStore, rtype: str, rid: str) -> dict[str, Any]:
    got = store.read(rtype, rid)
    assert got is not None, f"{rtype}/{rid} was not stored"
    assert not got.deleted and got.content is not None
    return json.loads(got.content)


def files_in_load_order(paths: Iterable[Path]) -> list[Path]:
    """Folders expand to their .json/.ndjson files, sorted, in the order the paths are given."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted((x for x in p.rglob("*") if x.is_file() and x.suffix.lower() in (".json", ".ndjson")),
                          key=str)
        else:
            out.append(p)
    return out


def resources_of(path: Path) -> list[dict[str, Any]]:
    """The resources a load of this (clean) file writes under their own ids, in order."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and "resourceType" in doc, f"{path} is not a FHIR resource"
    if doc["resourceType"] == "Bundle":
        assert doc.get("type") in ENTRY_BUNDLES, f"{path}: expected no transaction/batch Bundles here"
        return [e["resource"] for e in doc.get("entry") or []]
    return [doc]


Key = tuple[str, str]


def writes_by_key(files: Iterable[Path]) -> dict[Key, list[dict[str, Any]]]:
    """Every version a load of these files writes, per (type, id), in load order."""
    writes: dict[Key, list[dict[str, Any]]] = {}
    for f in files:
        for r in resources_of(f):
            writes.setdefault((r["resourceType"], r["id"]), []).append(r)
    return writes


def assert_stored_as_written(store: SqlStore, writes: dict[Key, list[dict[str, Any]]]) -> None:
    """The current version is the last write; each history version is the matching write (meta aside)."""
    problems: list[str] = []
    for (rtype, rid), versions in writes.items():
        cur = store.read(rtype, rid)
        if cur is None or cur.content is None:
            problems.append(f"{rtype}/{rid}: not stored")
            continue
        if cur.version != len(versions):
            problems.append(f"{rtype}/{rid}: version {cur.version}, expected {len(versions)}")
        for n, expected in enumerate(versions, 1):
            got = store.vread(rtype, rid, n)
            if got is None or got.content is None:
                problems.append(f"{rtype}/{rid}: version {n} missing")
                continue
            body = json.loads(got.content)
            if without_meta(body) != without_meta(expected):
                diff = sorted(k for k in set(body) | set(expected) - {"meta"}
                              if k != "meta" and body.get(k) != expected.get(k))
                problems.append(f"{rtype}/{rid} v{n}: differs from its file in {diff}")
            if meta_kept(body) != meta_kept(expected):
                problems.append(f"{rtype}/{rid} v{n}: meta changed {meta_kept(expected)} -> {meta_kept(body)}")
    assert not problems, "\n".join(problems)


# -- official DEQM and ATR examples ------------------------------------------------------------------------


def atr_resource_files() -> list[Path]:
    """The ATR examples; illustrative/ holds request bodies and a manifest, not content to load."""
    require_shared()
    return sorted(ATR.glob("*.json"), key=str)


def test_official_examples_load_and_read_back_identical(db_url: str, tmp_path: Path,
                                                         open_store: list[SqlStore]) -> None:
    atr_files = atr_resource_files()
    assert len(atr_files) >= 16 and not any("illustrative" in str(p) for p in atr_files)
    run = run_load(db_url, DEQM, *atr_files, cwd=tmp_path)

    files = files_in_load_order([DEQM, *atr_files])
    writes = writes_by_key(files)
    n_writes = sum(len(v) for v in writes.values())
    assert run.returncode == 0, run.describe()
    assert (run.loaded, run.files, run.errors) == (n_writes, len(files), 0), run.describe()
    assert run.error_lines == []

    store = connect(db_url, open_store)
    assert store.count() == len(writes)
    per_type = Counter(t for t, _ in writes)
    for rtype, n in per_type.items():
        assert store.count(rtype) == n, rtype
    assert_stored_as_written(store, writes)


def test_examples_that_share_an_id_keep_the_last_file(db_url: str, tmp_path: Path,
                                                      open_store: list[SqlStore]) -> None:
    """MeasureReport/gaps-indv-measurereport01 is both a stand-alone example and an entry of the gaps document
    Bundle (with different content): loading both keeps both versions, the later file being current."""
    document = DEQM / "Bundle-single-gaps-open-indv-report01.json"
    single = DEQM / "MeasureReport-gaps-indv-measurereport01.json"
    in_doc = next(r for r in resources_of(document) if r["id"] == "gaps-indv-measurereport01")
    alone = resources_of(single)[0]
    assert without_meta(in_doc) != without_meta(alone)

    run = run_load(db_url, single, document, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    store = connect(db_url, open_store)
    got = store.read("MeasureReport", "gaps-indv-measurereport01")
    assert got is not None and got.version == 2
    assert without_meta(stored_json(store, "MeasureReport", "gaps-indv-measurereport01")) == without_meta(in_doc)
    first = store.vread("MeasureReport", "gaps-indv-measurereport01", 1)
    assert first is not None and first.content is not None
    assert without_meta(json.loads(first.content)) == without_meta(alone)


# -- a folder mixing good and bad input --------------------------------------------------------------------

MIXED_LOADED = {"Patient": 5, "Observation": 3, "Encounter": 1, "Organization": 1}


def assert_mixed_errors(run: LoadRun) -> None:
    errs = run.error_lines
    assert len(errs) == 3, run.describe()
    bad_nd = re.escape(str(MIXED / "partly-bad.ndjson"))
    broken = re.escape(str(MIXED / "broken.json"))
    assert sum(bool(re.match(rf"^error: {bad_nd}:2: \S", e)) for e in errs) == 1, run.describe()  # malformed
    assert sum(bool(re.match(rf"^error: {bad_nd}:5: \S", e)) for e in errs) == 1, run.describe()  # bad id
    assert sum(bool(re.match(rf"^error: {broken}(:\d+)*: \S", e)) for e in errs) == 1, run.describe()
    assert not any(("good.ndjson" in e or "organization.json" in e or "transaction.json" in e) for e in errs)


def test_mixed_folder_loads_good_records_and_reports_bad_ones(db_url: str, tmp_path: Path,
                                                              open_store: list[SqlStore]) -> None:
    run = run_load(db_url, MIXED, cwd=tmp_path)
    assert run.returncode == 1, run.describe()
    assert (run.loaded, run.files, run.errors, run.warnings) == (10, 5, 3, 0), run.describe()
    assert_mixed_errors(run)

    store = connect(db_url, open_store)
    assert store.count() == 10
    for rtype, n in MIXED_LOADED.items():
        assert store.count(rtype) == n, rtype

    # NDJSON: every good line stored unchanged, the bad ones not at all
    good_lines = [json.loads(ln) for ln in (MIXED / "good.ndjson").read_text().splitlines()]
    bad_lines = (MIXED / "partly-bad.ndjson").read_text().splitlines()
    partly_good = [json.loads(bad_lines[i]) for i in (0, 3, 5)]  # lines 1, 4, 6
    for res in [*good_lines, *partly_good]:
        assert without_meta(stored_json(store, res["resourceType"], res["id"])) == res
    assert store.read("Patient", "ld-pat-4") is None
    assert store.read("Patient", "ld pat 5") is None
    assert store.read("Patient", "ld-pat-broken") is None

    org = json.loads((MIXED / "organization.json").read_text())
    assert without_meta(stored_json(store, "Organization", "ld-org-1")) == org

    # transaction: server-assigned ids, urn:uuid references rewritten to them
    tx_patients = [r for r in store.iter_current("Patient") if not r.id.startswith("ld-")]
    encounters = list(store.iter_current("Encounter"))
    tx_obs = [r for r in store.iter_current("Observation") if not r.id.startswith("ld-")]
    assert len(tx_patients) == len(encounters) == len(tx_obs) == 1
    pid, eid = tx_patients[0].id, encounters[0].id
    enc = stored_json(store, "Encounter", eid)
    obs = stored_json(store, "Observation", tx_obs[0].id)
    assert stored_json(store, "Patient", pid)["name"][0]["family"] == "Transact"
    assert enc["subject"] == {"reference": f"Patient/{pid}"}
    assert obs["subject"] == {"reference": f"Patient/{pid}"}
    assert obs["encounter"] == {"reference": f"Encounter/{eid}"}
    for r in (*tx_patients, *encounters, *tx_obs):
        assert r.content is not None and b"urn:uuid" not in r.content


def test_summary_line_also_without_quiet(tmp_path: Path) -> None:
    """The progress display must not hide or garble the summary on a non-terminal stdout."""
    run = run_load(f"sqlite:///{tmp_path / 'db.sqlite3'}", MIXED, cwd=tmp_path, quiet=False)
    assert run.returncode == 1, run.describe()
    assert (run.loaded, run.files, run.errors) == (10, 5, 3), run.describe()
    assert_mixed_errors(run)


def test_missing_path_is_an_error_and_the_rest_loads(tmp_path: Path, open_store: list[SqlStore]) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    missing = tmp_path / "no-such-file.ndjson"
    run = run_load(url, missing, MIXED / "organization.json", cwd=tmp_path)
    assert run.returncode == 1, run.describe()
    assert (run.loaded, run.errors) == (1, 1), run.describe()
    assert any(e.startswith(f"error: {missing}") for e in run.error_lines), run.describe()
    assert connect(url, open_store).count("Organization") == 1


def test_long_values_load_on_every_backend(db_url: str, tmp_path: Path, open_store: list[SqlStore]) -> None:
    """FHIR strings have no 255-character limit: a 300-character Identifier.value and family name are valid,
    must load, and must not take the other lines of the file down with them."""
    path = LOAD_FIXTURES / "long-values.ndjson"
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    run = run_load(db_url, path, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert (run.loaded, run.files, run.errors) == (3, 1, 0), run.describe()
    store = connect(db_url, open_store)
    for res in lines:
        assert without_meta(stored_json(store, "Patient", res["id"])) == res


def test_loading_twice_creates_no_duplicates(db_url: str, tmp_path: Path, open_store: list[SqlStore]) -> None:
    require_shared()
    ndjson = [MIXED / "good.ndjson"]
    jsons = [MIXED / "organization.json", sorted(CMS122_TESTS.glob("*.json"), key=str)[0]]
    with_ids: list[dict[str, Any]] = [json.loads(ln) for ln in ndjson[0].read_text().splitlines()]
    for f in jsons:
        with_ids += resources_of(f)
    keys = {(r["resourceType"], r["id"]) for r in with_ids}
    assert len(keys) == len(with_ids), "fixture expects no id repeated within one load"

    first = run_load(db_url, *ndjson, *jsons, cwd=tmp_path)
    assert first.returncode == 0 and first.loaded == len(with_ids), first.describe()
    store = connect(db_url, open_store)
    counts = {t: store.count(t) for t, _ in keys}
    assert store.count() == len(keys)
    store.close()

    second = run_load(db_url, *ndjson, *jsons, cwd=tmp_path)
    assert second.returncode == 0 and second.loaded == len(with_ids), second.describe()
    store = connect(db_url, open_store)
    assert store.count() == len(keys)
    assert {t: store.count(t) for t, _ in keys} == counts
    for res in with_ids:
        got = store.read(res["resourceType"], res["id"])
        assert got is not None and got.version == 2, (res["resourceType"], res["id"])
        assert got.content is not None and without_meta(json.loads(got.content)) == without_meta(res)


# -- eCQM content ------------------------------------------------------------------------------------------


def cms347_measure() -> dict[str, Any]:
    bundle = json.loads(CMS347_BUNDLE.read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")


def test_cms347_measure_bundle_loads_leniently_with_warnings(db_url: str, tmp_path: Path,
                                                             open_store: list[SqlStore]) -> None:
    entries = resources_of(CMS347_BUNDLE)
    measure = cms347_measure()
    run = run_load(db_url, CMS347_BUNDLE, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert (run.loaded, run.files, run.errors) == (len(entries), 1, 0), run.describe()
    assert run.warnings > 0 and run.warnings == len(run.warning_lines), run.describe()
    valuecode_warnings = [w for w in run.warning_lines
                          if w.startswith(f"warning: {CMS347_BUNDLE}") and "Measure" in w and "valueCode" in w]
    assert valuecode_warnings, run.describe()

    store = connect(db_url, open_store)
    assert without_meta(stored_json(store, "Measure", measure["id"])) == without_meta(measure)
    assert store.count() == len({(r["resourceType"], r["id"]) for r in entries})
    assert_stored_as_written(store, writes_by_key([CMS347_BUNDLE]))


def test_cms347_measure_is_an_error_with_strict(tmp_path: Path, open_store: list[SqlStore]) -> None:
    url = f"sqlite:///{tmp_path / 'strict.sqlite3'}"
    measure = cms347_measure()
    bundle = json.loads(CMS347_BUNDLE.read_text())
    m_index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Measure")
    run = run_load(url, CMS347_BUNDLE, "--strict", cwd=tmp_path)
    assert run.returncode == 1, run.describe()
    assert run.errors >= 1
    assert any(e.startswith(f"error: {CMS347_BUNDLE}: entry {m_index}: ") and "Measure" in e
               for e in run.error_lines), run.describe()
    store = connect(url, open_store)
    assert store.read("Measure", measure["id"]) is None
    assert store.count("Measure") == 0


def test_cms122_test_bundles_give_the_expected_count(db_url: str, tmp_path: Path,
                                                     open_store: list[SqlStore]) -> None:
    require_shared()
    files = sorted(CMS122_TESTS.glob("*.json"), key=str)
    assert files
    writes = writes_by_key(files)
    n_entries = sum(len(v) for v in writes.values())
    run = run_load(db_url, *files, cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert (run.loaded, run.files, run.errors) == (n_entries, len(files), 0), run.describe()

    store = connect(db_url, open_store)
    # ids are kept, so test cases that reuse an id (Encounter-1, Condition-1, ...) share one resource
    assert store.count() == len(writes)
    for rtype, n in Counter(t for t, _ in writes).items():
        assert store.count(rtype) == n, rtype
    assert store.count("Patient") == len(files)
    assert_stored_as_written(store, writes)
