"""$data-requirements derived from the ELM covers what the measure authors published as the measure's
effective data requirements (the Library contained in each eCQM Measure)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_client
from tests.test_evaluate_measure import JSON, load_measure, measure_id


@pytest.fixture()
def client(store: Any) -> Any:
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


def filters(reqs: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {(d["type"], (d.get("codeFilter") or [{}])[0].get("valueSet")) for d in reqs}


@pytest.mark.parametrize("measure", ["CMS130", "CMS347"])
def test_matches_the_published_effective_data_requirements(client: TestClient, measure: str) -> None:
    load_measure(client, measure)
    mid = measure_id(measure)
    r = client.get(f"/fhir/Measure/{mid}/$data-requirements", params={"periodStart": "2025-01-01",
                                                                       "periodEnd": "2025-12-31"})
    assert r.status_code == 200, r.text
    lib = r.json()
    assert lib["resourceType"] == "Library" and lib["type"]["coding"][0]["code"] == "module-definition"
    published = next(c for c in client.get(f"/fhir/Measure/{mid}").json()["contained"]
                     if c["resourceType"] == "Library")
    assert filters(lib["dataRequirement"]) == filters(published["dataRequirement"])
    vs = {d["codeFilter"][0]["valueSet"] for d in lib["dataRequirement"] if d.get("codeFilter")
          and d["codeFilter"][0].get("valueSet")}
    assert vs <= {a["resource"] for a in lib["relatedArtifact"]}
    for d in lib["dataRequirement"]:
        assert d["profile"]  # the retrieve's template
        for df in d.get("dateFilter", []):
            assert df["valuePeriod"] == {"start": "2025-01-01", "end": "2025-12-31"}
    # POST with Parameters and the type-level form give the same requirements
    post = client.post("/fhir/Measure/$data-requirements", headers=JSON, json={"resourceType": "Parameters",
        "parameter": [{"name": "measure", "valueString": f"Measure/{mid}"}]})
    assert post.status_code == 200 and filters(post.json()["dataRequirement"]) == filters(lib["dataRequirement"])


def test_bad_input(client: TestClient) -> None:
    load_measure(client, "CMS130")
    mid = measure_id("CMS130")
    assert client.get("/fhir/Measure/none/$data-requirements").status_code == 404
    r = client.get(f"/fhir/Measure/{mid}/$data-requirements", params={"periodStart": "2025-13-01",
                                                                       "periodEnd": "2025-12-31"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = client.get(f"/fhir/Measure/{mid}/$data-requirements", params={"subject": "Patient/1"})
    assert r.status_code == 400 and "subject" in r.json()["issue"][0]["diagnostics"]
