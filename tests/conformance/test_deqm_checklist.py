"""The "DEQM additions to test ourselves" of ``../shared/spec/conformance-checklists.md`` (from the deqm-test-kit
v5 suite), one test per line, against a real ``fhir-gateway serve`` over https with a Backend Services token.
The measure is CMS130 (colorectal cancer screening) from ``../shared/testdata/ecqm``, loaded with
``fhir-gateway load`` together with two of its published test cases."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from gateway.measure.cases import _counts, case_paths
from tests.conformance.checklist import check_mapping, deqm_line
from tests.conformance.conftest import Gateway
from tests.conftest import SHARED, clean_env, gateway_exe, require_shared
from tests.test_evaluate_measure import OVERRIDES, as_transaction

pytestmark = pytest.mark.live

CHECKLIST = {
    "`Measure/$evaluate` returns Parameters → Bundle(s) → MeasureReport": "test_deqm_01_evaluate_response_shape",
    "Errors → 400 (or 404 for an unknown measure)": "test_deqm_02_evaluate_errors_400_or_404",
    "`$care-gaps` returns 400 when `subject` and `organization` are combined":
        "test_deqm_03_care_gaps_conflicts_and_missing_parameters_400",
    "`$data-requirements` matches the reference server's `dataRequirement` set":
        "test_deqm_04_data_requirements_match_the_reference",
}

MEASURE = "CMS130"
ECQM = SHARED / "testdata" / "ecqm"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def test_deqm_checklist_every_line_has_one_test() -> None:
    """Every DEQM addition of the checklist maps to exactly one test here."""
    check_mapping(CHECKLIST, deqm_line, globals())


@pytest.fixture(scope="module")
def measure(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """CMS130 and two of its test cases loaded into the running gateway's database with ``fhir-gateway
    load``; the Measure, the case patients and their expected reports."""
    require_shared()
    bundle = json.loads((ECQM / MEASURE / "measure-bundle.json").read_text())
    measure = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")
    work = tmp_path_factory.mktemp("deqm")
    files = [ECQM / MEASURE / "measure-bundle.json"]
    cases = []
    for path in case_paths(ECQM / MEASURE)[:2]:
        case = json.loads(path.read_text())
        tx = as_transaction(case)
        out = work / path.name
        out.write_text(json.dumps(tx))
        files.append(out)
        pid = next(e["resource"]["id"] for e in case["entry"] if e["resource"]["resourceType"] == "Patient")
        override = OVERRIDES.get((MEASURE, path.stem))
        expected_mr = case["entry"][-1]["resource"]
        expected = override["expected"] if override else [_counts(g) for g in expected_mr["group"]]
        cases.append((pid, expected))
    done = subprocess.run([gateway_exe(), "load", "--database", gateway.database, "--quiet", *map(str, files)],
                          capture_output=True, text=True, env=clean_env(), cwd=work, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    return {"measure": measure, "cases": cases}


def _h(gw: Gateway) -> dict[str, str]:
    return {**FHIR_JSON, "Authorization": f"Bearer {gw.backend_token('system/*.rs')}"}


def _counts_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in _counts(g).items() if not k.endswith("-observation")} for g in report["group"]]


def _check_parameters(body: dict[str, Any], types: set[str]) -> list[dict[str, Any]]:
    """The v5 kit's response check: a Parameters whose every entry is a Bundle holding at least one
    MeasureReport with status complete, measure, period start and end, and type in ``types``."""
    assert body["resourceType"] == "Parameters" and body["parameter"]
    reports = []
    for p in body["parameter"]:
        bundle = p["resource"]
        assert bundle["resourceType"] == "Bundle"
        found = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MeasureReport"]
        assert found, bundle
        for mr in found:
            assert mr["status"] == "complete" and mr["measure"]
            assert mr["period"]["start"] and mr["period"]["end"]
            assert mr["type"] in types and mr["type"] in {"individual", "summary", "subject-list"}
        reports.extend(found)
    return reports


def test_deqm_01_evaluate_response_shape(gateway: Gateway, measure: dict[str, Any]) -> None:
    """`Measure/$evaluate` returns Parameters → Bundle(s) → MeasureReport with `status=complete`, `measure`,
    `period`, and `type ∈ {individual, summary, subject-list}`. At type level (GET and POST) and instance
    level; default population (summary), `subject` Patient (individual; its counts are the published test
    case's), two patients as a stored `subjectGroup`-style Group subject, and subject-list."""
    m = measure["measure"]
    pid, expected = measure["cases"][0]
    with gateway.http() as c:
        summary = c.get(f"{gateway.base}/Measure/$evaluate", params={**PERIOD, "measureId": m["id"]},
                        headers=_h(gateway))
        assert summary.status_code == 200, summary.text
        (report,) = _check_parameters(summary.json(), {"summary"})
        assert report["measure"] == m["url"] or report["measure"].startswith(m["url"])
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": PERIOD["periodStart"]},
            {"name": "periodEnd", "valueDate": PERIOD["periodEnd"]},
            {"name": "subject", "valueString": f"Patient/{pid}"}, {"name": "reportType", "valueCode": "subject"}]}
        one = c.post(f"{gateway.base}/Measure/{m['id']}/$evaluate", json=body, headers=_h(gateway))
        assert one.status_code == 200, one.text
        reports = _check_parameters(one.json(), {"individual"})
        assert reports[0]["subject"]["reference"] == f"Patient/{pid}"
        assert _counts_of(reports[0]) == [{k: v for k, v in g.items() if not k.endswith("-observation")}
                                          for g in expected]
        group = {"resourceType": "Group", "id": "cf-deqm-group", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{p}"}} for p, _ in measure["cases"]]}
        put = c.put(f"{gateway.base}/Group/cf-deqm-group", json=group,
                    headers={**FHIR_JSON, "Authorization": f"Bearer {gateway.backend_token()}"})
        assert put.status_code in (200, 201), put.text
        listed = c.get(f"{gateway.base}/Measure/$evaluate", headers=_h(gateway),
                       params={**PERIOD, "measureId": m["id"], "subject": "Group/cf-deqm-group",
                               "reportType": "subject-list"})
        assert listed.status_code == 200, listed.text
        _check_parameters(listed.json(), {"subject-list"})


def test_deqm_02_evaluate_errors_400_or_404(gateway: Gateway, measure: dict[str, Any]) -> None:
    """Errors → 400 (or 404 for an unknown measure). The v5 kit's error cases: an unknown measure (404), no
    measure named, an invalid reportType, a malformed subject, a malformed Parameters body (400 each); an
    unknown patient is 404 here (the subject does not exist), which the kit accepts as the 4xx it checks.
    Every error is an OperationOutcome."""
    m = measure["measure"]
    with gateway.http() as c:
        def get(params: dict[str, str], path: str = "Measure/$evaluate") -> httpx.Response:
            return c.get(f"{gateway.base}/{path}", params={**PERIOD, **params}, headers=_h(gateway))

        cases = {
            "unknown measure id": (get({"measureId": "no-such-measure"}), {404}),
            "unknown measure instance": (get({}, "Measure/no-such-measure/$evaluate"), {404}),
            "no measure": (get({}), {400}),
            "invalid reportType": (get({"measureId": m["id"], "reportType": "everything"}), {400}),
            "malformed subject": (get({"measureId": m["id"], "subject": "Practitioner"}), {400}),
            "unknown patient": (get({"measureId": m["id"], "subject": "Patient/no-such-patient"}), {400, 404}),
            "malformed Parameters": (c.post(f"{gateway.base}/Measure/$evaluate", content=b'{"resourceType": "Par',
                                            headers=_h(gateway)), {400}),
            "not Parameters": (c.post(f"{gateway.base}/Measure/$evaluate", json={"resourceType": "Patient"},
                                      headers=_h(gateway)), {400}),
            "bad periodStart": (get({"measureId": m["id"], "periodStart": "2025-13-45"}), {400}),
        }
    for what, (r, allowed) in cases.items():
        assert r.status_code in allowed, (what, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", what
        assert r.json()["issue"][0]["diagnostics"], what


def test_deqm_03_care_gaps_conflicts_and_missing_parameters_400(gateway: Gateway, measure: dict[str, Any]) -> None:
    """`$care-gaps` returns 400 when `subject` and `organization` are combined and when a required parameter
    is missing (periodStart, periodEnd, status), each with an OperationOutcome; the same request without the
    conflict succeeds, so the 400s are about the conflict and the missing parameter."""
    m = measure["measure"]
    pid = measure["cases"][0][0]
    full = {**PERIOD, "measureId": m["id"], "status": "open-gap", "subject": f"Patient/{pid}"}
    with gateway.http() as c:
        def gaps(params: dict[str, str]) -> httpx.Response:
            return c.get(f"{gateway.base}/Measure/$care-gaps", params=params, headers=_h(gateway))

        ok = gaps(full)
        assert ok.status_code == 200, ok.text
        assert ok.json()["resourceType"] == "Parameters"
        bad = {"subject with organization": {**full, "organization": "Organization/cf-org"},
               "subject Group with organization": {**full, "subject": "Group/cf-group",
                                                   "organization": "Organization/cf-org"}}
        for missing in ("periodStart", "periodEnd", "status"):
            bad[f"no {missing}"] = {k: v for k, v in full.items() if k != missing}
        for what, params in bad.items():
            r = gaps(params)
            assert r.status_code == 400, (what, r.status_code, r.text)
            assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["diagnostics"], what


def _reference_requirements(measure_id: str) -> list[dict[str, Any]]:
    """The reference dataRequirement set: the effective data requirements Library (``module-definition``)
    contained in the published Measure of ``../shared/testdata/ecqm/CMS130/measure-bundle.json``, which the
    measure authors generated with the reference tooling (the deqm kit compares with a reference server's
    answer; this fixture is the stored form of that answer)."""
    bundle = json.loads((ECQM / MEASURE / "measure-bundle.json").read_text())
    m = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure"
             and e["resource"]["id"] == measure_id)
    lib = next(c for c in m["contained"] if c["resourceType"] == "Library"
               and c["type"]["coding"][0]["code"] == "module-definition")
    return list(lib["dataRequirement"])


def _key(d: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """What the kit compares: the type and each code filter's value set (or code), per requirement."""
    cf = (d.get("codeFilter") or [{}])[0]
    code = ",".join(sorted(c.get("code", "") for c in cf.get("code", []))) or None
    return d["type"], cf.get("valueSet"), code


def test_deqm_04_data_requirements_match_the_reference(gateway: Gateway, measure: dict[str, Any]) -> None:
    """`$data-requirements` matches the reference server's `dataRequirement` set. The reference is the
    published effective data requirements of CMS130 (``../shared/testdata/ecqm/CMS130/measure-bundle.json``,
    the Library contained in the Measure); the set of (type, value set, code) must be equal, instance and
    type level, GET and POST. Unknown measure → 404."""
    require_shared()
    m = measure["measure"]
    reference = {_key(d) for d in _reference_requirements(m["id"])}
    assert reference
    with gateway.http() as c:
        inst = c.get(f"{gateway.base}/Measure/{m['id']}/$data-requirements", params=PERIOD, headers=_h(gateway))
        assert inst.status_code == 200, inst.text
        lib = inst.json()
        assert lib["resourceType"] == "Library" and lib["type"]["coding"][0]["code"] == "module-definition"
        assert {_key(d) for d in lib["dataRequirement"]} == reference
        post = c.post(f"{gateway.base}/Measure/$data-requirements", headers=_h(gateway), json={
            "resourceType": "Parameters", "parameter": [{"name": "measure", "valueString": f"Measure/{m['id']}"},
                                                        {"name": "periodStart", "valueDate": PERIOD["periodStart"]},
                                                        {"name": "periodEnd", "valueDate": PERIOD["periodEnd"]}]})
        assert post.status_code == 200, post.text
        assert {_key(d) for d in post.json()["dataRequirement"]} == reference
        missing = c.get(f"{gateway.base}/Measure/no-such-measure/$data-requirements", headers=_h(gateway))
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
