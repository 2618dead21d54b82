"""Load FHIR JSON files into the store: Bundles (transaction, batch, collection, ...), single resources and
NDJSON, from files or folders. Good records load even when others in the same run are bad; every problem is
reported with its file and line (NDJSON) or entry index (Bundles)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import orjson

from ..demo import DEMO_PATIENTS, DEMO_PERIOD_YEAR, DEMO_SEED
from ..fhir.errors import FhirError
from ..resources.rest import RestService
from ..resources.transaction import BundleProcessor

CHUNK = 500


@dataclass
class LoadSummary:
    files: int = 0
    resources: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.is_file() and x.suffix.lower() in (".json", ".ndjson"))
        else:
            yield p


def _json_error(path: Path, exc: orjson.JSONDecodeError) -> str:
    m = re.search(r"line (\d+) column (\d+)", str(exc))
    where = f":{m.group(1)}:{m.group(2)}" if m else ""
    return f"{path}{where}: malformed JSON ({exc.msg if hasattr(exc, 'msg') else exc})"


class Loader:
    def __init__(self, rest: RestService, level: str = "lenient",
                 progress: Callable[[int], None] | None = None) -> None:
        self.rest = rest
        self.level = level
        self.progress = progress or (lambda n: None)

    def load(self, paths: Iterable[Path]) -> LoadSummary:
        summary = LoadSummary()
        for path in iter_files(paths):
            summary.files += 1
            try:
                if path.suffix.lower() == ".ndjson":
                    self._ndjson(path, summary)
                else:
                    self._json(path, path.read_bytes(), summary)
            except OSError as exc:
                summary.errors.append(f"{path}: cannot read ({exc.strerror})")
        return summary

    def _ndjson(self, path: Path, summary: LoadSummary) -> None:
        batch: list[tuple[str, dict[str, Any]]] = []
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    res = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    summary.errors.append(f"{where}: malformed JSON ({exc})")
                    continue
                batch.append((where, res))
                if len(batch) >= CHUNK:
                    self._write(batch, summary)
                    batch = []
        self._write(batch, summary)

    def _json(self, path: Path, data: bytes, summary: LoadSummary) -> None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            summary.errors.append(_json_error(path, exc))
            return
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and doc.get("type") in ("transaction",
                                                                                                    "batch"):
            proc = BundleProcessor(self.rest, enforce_references=False, validation_level=self.level)
            try:
                resp = proc.process(doc)
            except FhirError as exc:
                summary.errors.append(f"{path}: {exc.diagnostics}")
                return
            for i, e in enumerate(resp["entry"]):
                status = e["response"]["status"]
                if status[:1] in ("2",):
                    summary.resources += 1
                else:
                    diag = (e["response"].get("outcome") or {}).get("issue", [{}])[0].get("diagnostics", status)
                    summary.errors.append(f"{path}: entry {i}: {diag}")
            self.progress(len(resp["entry"]))
            return
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and doc.get("type") in (
                "collection", "document", "searchset", "message", "history"):
            items = [(f"{path}: entry {i}", e.get("resource")) for i, e in enumerate(doc.get("entry") or [])
                     if isinstance(e, dict)]
            for i in range(0, len(items), CHUNK):
                self._write(items[i:i + CHUNK], summary)
            return
        self._write([(str(path), doc)], summary)

    def _write(self, items: list[tuple[str, Any]], summary: LoadSummary) -> None:
        if not items:
            return
        good: list[tuple[str, dict[str, Any], list[Any]]] = []
        for where, res in items:
            try:
                warnings = self.rest.validate(res, None, self.level)
            except FhirError as exc:
                summary.errors.append(f"{where}: {exc.diagnostics}")
                continue
            for w in warnings:
                summary.warnings.append(f"{where}: {w.diagnostics}")
            good.append((where, res, warnings))
        if not good:
            return
        try:
            self._store(good)
        except FhirError:
            # one record spoils the chunk's database transaction: store one by one to keep the good ones
            for item in good:
                try:
                    self._store([item])
                except FhirError as exc:
                    summary.errors.append(f"{item[0]}: {exc.diagnostics}")
                    continue
                summary.resources += 1
                self.progress(1)
            return
        summary.resources += len(good)
        self.progress(len(good))

    def _store(self, items: list[tuple[str, dict[str, Any], list[Any]]]) -> None:
        with self.rest.store.session() as tx:
            for _where, res, warnings in items:
                if res.get("id"):
                    self.rest.update(res["resourceType"], res["id"], res, tx=tx, prevalidated=warnings)
                else:
                    self.rest.create(res["resourceType"], res, tx=tx, prevalidated=warnings)




def load_demo(rest: RestService, claims: bool = True) -> LoadSummary:
    """The demo bundle, the demo measures (FHIRPath criteria, gateway/demo/measures), DEMO_PATIENTS synthetic
    patients to evaluate them on (docs/demo-measures.md) and, with ``claims``, the synthetic claims file
    gateway/demo/claims.csv through the claims-csv ingest (gateway.demo.claims)."""
    from ..demo.synth import demo_measures, iter_resources

    data = pkg_resources.files("gateway.demo").joinpath("demo-bundle.json").read_bytes()
    loader = Loader(rest, level="strict")
    summary = LoadSummary(files=1)
    loader._json(Path("demo-bundle.json"), data, summary)
    from ..demo.attribution import demo_attribution_group

    bundle = [e["resource"] for e in orjson.loads(data)["entry"]]
    loader._write([("demo ATR attribution list", demo_attribution_group(bundle))], summary)
    items: list[tuple[str, Any]] = [(f"demo Measure/{m.get('id')}", m) for m in demo_measures()]
    summary.files += len(items)
    items.extend((f"synthetic {r['resourceType']}/{r['id']}", r)
                 for r in iter_resources(DEMO_PATIENTS, DEMO_SEED, DEMO_PERIOD_YEAR))
    for i in range(0, len(items), CHUNK):
        loader._write(items[i:i + CHUNK], summary)
    if claims:
        _ingest_demo_claims(rest, summary)
    if summary.errors:
        raise RuntimeError("demo data failed to load: " + "; ".join(summary.errors[:3]))
    return summary


def _ingest_demo_claims(rest: RestService, summary: LoadSummary) -> None:
    from .service import Ingestor

    with pkg_resources.as_file(pkg_resources.files("gateway.demo").joinpath("claims.csv")) as path:
        done = Ingestor(rest, "claims-csv").ingest([path])
    summary.files += 1
    summary.resources += done.resources
    summary.errors.extend(f"demo claims {r}" for r in done.rejects)
