"""Regenerate the run-time FHIR R4 definitions in profiles/ from the official R4 definition files.

Usage: python tools/build_profiles.py [SOURCE_DIR]   (default: ../shared/fhir-r4 beside the repo)

Writes:
- profiles/search-parameters.json   Bundle of the 1,378 official R4 SearchParameter resources, trimmed to the
                                     elements the server uses (no narrative, no xpath).
- profiles/compartment-patient.json  the Patient CompartmentDefinition, unchanged apart from the narrative.
- profiles/resource-types.json       the 145 R4 resource type names.
- profiles/search-parameters-extra.json  SearchParameters the server adds beyond R4 core (Da Vinci ATR's
                                     Group `name` and contract `period`, and `attributed-provider`, which
                                     lets a group export find the members' attributed providers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP = {"resourceType", "id", "url", "version", "name", "status", "description", "code", "base", "type",
        "expression", "target", "multipleOr", "multipleAnd", "comparator", "modifier", "chain", "component"}
# R4 resource types that have no type-specific search parameter (so are absent from the bases above)
EXTRA_TYPES = ["Binary", "BiologicallyDerivedProduct", "CatalogEntry", "MedicinalProductIngredient",
               "MedicinalProductManufactured", "OperationOutcome", "Parameters", "SubstanceNucleicAcid",
               "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial"]


ATR = "http://hl7.org/fhir/us/davinci-atr"
ATR_EXT = f"{ATR}/StructureDefinition"
EXTRA = [
    {"id": "atr-group-name", "code": "name", "type": "string", "expression": "Group.name",
     "description": "Da Vinci ATR: the name of the attribution list"},
    {"id": "atr-group-period", "code": "period", "type": "date",
     "expression": f"Group.extension.where(url='{ATR_EXT}/ext-contractValidityPeriod').value",
     "description": "Da Vinci ATR: the contract validity period of the attribution list"},
    {"id": "atr-group-attributed-provider", "code": "attributed-provider", "type": "reference",
     "expression": f"Group.member.extension.where(url='{ATR_EXT}/ext-attributedProvider').value",
     "target": ["Practitioner", "PractitionerRole", "Organization"],
     "description": "Da Vinci ATR: a provider some member is attributed to"},
]


# Da Vinci DEQM's own search parameter (measurereport-category)
DEQM_EXTRA = [
    {"id": "measurereport-category", "code": "category", "type": "token", "base": ["MeasureReport"],
     "url": "http://hl7.org/fhir/us/davinci-deqm/SearchParameter/measurereport-category", "name": "category",
     "description": "DEQM: the MeasureReport category (measurereport-category extension)",
     "expression": "MeasureReport.extension.where(url='http://hl7.org/fhir/StructureDefinition/"
                   "measurereport-category').value"},
]


def extra_parameters() -> dict:
    entries = []
    for p in EXTRA:
        url = f"{ATR}/SearchParameter/{p['id']}"
        sp = {"resourceType": "SearchParameter", **p, "url": url, "name": p["id"].replace("-", "_"),
              "status": "active", "base": ["Group"]}
        entries.append({"fullUrl": url, "resource": sp})
    for p in DEQM_EXTRA:
        entries.append({"fullUrl": p["url"], "resource": {"resourceType": "SearchParameter", **p, "status": "active"}})
    return {"resourceType": "Bundle", "id": "searchParamsExtra", "type": "collection", "entry": entries}


def main(src: Path) -> None:
    bundle = json.loads((src / "search-parameters.json").read_text())
    out_entries = []
    types: set[str] = set(EXTRA_TYPES)
    for e in bundle["entry"]:
        sp = {k: v for k, v in e["resource"].items() if k in KEEP}
        if "description" in sp:
            sp["description"] = sp["description"].split("\r\n")[0][:300]
        out_entries.append({"fullUrl": e.get("fullUrl"), "resource": sp})
        types.update(b for b in sp["base"] if b not in ("Resource", "DomainResource"))
    prof = ROOT / "profiles"
    prof.mkdir(exist_ok=True)
    (prof / "search-parameters.json").write_text(json.dumps(
        {"resourceType": "Bundle", "id": "searchParams", "type": "collection", "entry": out_entries},
        separators=(",", ":")) + "\n")
    comp = json.loads((src / "compartmentdefinition-patient.json").read_text())
    comp.pop("text", None)
    (prof / "compartment-patient.json").write_text(json.dumps(comp, indent=1) + "\n")
    (prof / "search-parameters-extra.json").write_text(json.dumps(extra_parameters(), indent=1) + "\n")
    (prof / "resource-types.json").write_text(json.dumps(sorted(types), indent=1) + "\n")
    print(f"{len(out_entries)} search parameters, {len(types)} resource types")


if __name__ == "__main__":
    if sys.argv[1:] == ["--extra-only"]:  # the gateway's own parameters, without the R4 sources
        (ROOT / "profiles" / "search-parameters-extra.json").write_text(json.dumps(extra_parameters(), indent=1) + "\n")
        sys.exit(0)
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "fhir-r4")
