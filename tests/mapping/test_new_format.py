"""The worked example of docs/guides/mappings.md: a new flat format is a mapping file, no code. The mapping file
is taken from the guide itself, so the guide stays true."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.ingest.service import Ingestor
from gateway.mapping.spec import load_spec
from gateway.resources.rest import RestService
from tests.conftest import BASE, ROOT
from tests.mapping.helpers import counts, read

GUIDE = ROOT / "docs" / "guides" / "mappings.md"


def _guide_blocks() -> tuple[str, str]:
    text = GUIDE.read_text()
    part = text[text.index("## Worked example"):]
    blocks = re.findall(r"```(?:yaml)?\n(.*?)```", part, re.S)
    return blocks[0], blocks[1]  # the CSV sample, the mapping file


def test_guide_example_loads(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv_text, yaml_text = _guide_blocks()
    (tmp_path / "partner-claims.inbound.yaml").write_text(yaml_text)
    data = tmp_path / "data"
    data.mkdir()
    bad = csv_text + "C200,1,M002,1950-02-30,X,2025-03-02,99213,Z1231,1234567893,10.00\n"
    (data / "partner_claims.csv").write_text(bad)
    spec = load_spec(tmp_path / "partner-claims.inbound.yaml")
    summary = Ingestor(RestService(store, BASE), spec).ingest([data])
    assert [(r.where, r.field) for r in summary.rejects] == [("partner_claims.csv:4", "DOB")]
    assert counts(store) == {"Patient": 1, "ExplanationOfBenefit": 1, "Procedure": 2}
    eob = read(store, "ExplanationOfBenefit", "partner-C100")
    assert [i["productOrService"]["coding"][0]["code"] for i in eob["item"]] == ["77067", "99213"]
    assert eob["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "Z12.31"
    assert read(store, "Patient", "partner-M001")["gender"] == "female"
