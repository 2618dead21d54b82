"""The FHIR R4 and QI-Core 4.1.1 models as the translator sees them.

Element types come from the same R4 model the engine navigates with (``gateway.cql.fhirmodel``), so the
translator and the engine agree on every element's type. QI-Core profiles map to their FHIR base types with the
profile's URL as the retrieve's ``templateId`` (``ObservationNotDone`` is an Observation profile, and so on).
FHIR values convert implicitly to System values as the FHIR model info declares: a primitive through its
``value`` element, the rest through the FHIRHelpers functions (``ToConcept``, ``ToCode``, ``ToInterval``,
``ToQuantity``, ``ToRatio``).
"""

from __future__ import annotations

from typing import Any

from .. import fhirmodel

QICORE_BASE = "http://hl7.org/fhir/us/qicore/StructureDefinition/"
FHIR_BASE = "http://hl7.org/fhir/StructureDefinition/"

# QI-Core profile names that are not the FHIR type's name: profile -> (FHIR type, profile id)
QICORE_PROFILES = {
    "ObservationNotDone": ("Observation", "qicore-observationnotdone"),
    "MedicationNotRequested": ("MedicationRequest", "qicore-mednotrequested"),
    "ServiceNotRequested": ("ServiceRequest", "qicore-servicenotrequested"),
    "MedicationAdministrationNotDone": ("MedicationAdministration", "qicore-medadminnotdone"),
    "MedicationNotDispensed": ("MedicationDispense", "qicore-mednotdispensed"),
    "ProcedureNotDone": ("Procedure", "qicore-procedurenotdone"),
    "ImmunizationNotDone": ("Immunization", "qicore-immunizationnotdone"),
    "DeviceNotRequested": ("DeviceRequest", "qicore-devicenotrequested"),
    "CommunicationNotDone": ("Communication", "qicore-communicationnotdone"),
    "TaskRejected": ("Task", "qicore-taskrejected"),
    "ConditionEncounterDiagnosis": ("Condition", "qicore-condition-encounter-diagnosis"),
    "ConditionProblemsHealthConcerns": ("Condition", "qicore-condition-problems-health-concerns"),
    "observation-bmi": ("Observation", FHIR_BASE + "bmi"),
    "observation-bp": ("Observation", FHIR_BASE + "bp"),
    "observation-bodyheight": ("Observation", FHIR_BASE + "bodyheight"),
    "observation-bodyweight": ("Observation", FHIR_BASE + "bodyweight"),
    "observation-vitalsigns": ("Observation", FHIR_BASE + "vitalsigns"),
}

# QI-Core elements that are US Core extensions: (type, element) -> (extension URL, element type, single?)
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
EXTENSION_ELEMENTS: dict[tuple[str, str], tuple[str, Any, bool]] = {
    ("FHIR.Patient", "race"): (US_CORE + "us-core-race", "QICore.Race", True),
    ("FHIR.Patient", "ethnicity"): (US_CORE + "us-core-ethnicity", "QICore.Ethnicity", True),
    ("FHIR.Patient", "birthsex"): (US_CORE + "us-core-birthsex", "FHIR.code", True),
    ("FHIR.ServiceRequest", "reasonRefused"): (QICORE_BASE + "qicore-doNotPerformReason", "FHIR.CodeableConcept",
                                               True),
    ("FHIR.Observation", "notDoneReason"): (QICORE_BASE + "qicore-notDoneReason", "FHIR.CodeableConcept", True),
    ("FHIR.Procedure", "recorded"): (QICORE_BASE + "qicore-recorded", "FHIR.dateTime", True),
    ("QICore.Race", "ombCategory"): ("ombCategory", ("List", "FHIR.Coding"), False),
    ("QICore.Race", "detailed"): ("detailed", ("List", "FHIR.Coding"), False),
    ("QICore.Race", "text"): ("text", "FHIR.string", True),
    ("QICore.Ethnicity", "ombCategory"): ("ombCategory", "FHIR.Coding", True),
    ("QICore.Ethnicity", "detailed"): ("detailed", ("List", "FHIR.Coding"), False),
    ("QICore.Ethnicity", "text"): ("text", "FHIR.string", True),
}

# the code element a retrieve with a terminology filter matches (the model info's primary code path)
PRIMARY_CODE_PATHS = {
    "Encounter": "type", "Observation": "code", "Condition": "code", "Procedure": "code",
    "MedicationRequest": "medication", "MedicationAdministration": "medication", "MedicationDispense": "medication",
    "MedicationStatement": "medication", "Immunization": "vaccineCode", "DiagnosticReport": "code",
    "ServiceRequest": "code", "AllergyIntolerance": "code", "Coverage": "type", "DeviceRequest": "code",
    "AdverseEvent": "event", "Communication": "reasonCode", "CommunicationRequest": "category",
    "Device": "type", "Medication": "code", "Task": "code", "Goal": "category", "FamilyMemberHistory": "relationship",
    "Specimen": "type", "Location": "type", "Claim": "type", "Flag": "code", "ImagingStudy": "procedureCode",
    "NutritionOrder": "oralDiet", "Practitioner": "identifier", "CarePlan": "category", "CareTeam": "category",
}

# FHIR primitive type -> the System type of its value
PRIMITIVE_VALUES = {
    "boolean": "Boolean", "integer": "Integer", "positiveInt": "Integer", "unsignedInt": "Integer",
    "integer64": "Long", "decimal": "Decimal", "string": "String", "code": "String", "id": "String",
    "markdown": "String", "uri": "String", "url": "String", "canonical": "String", "oid": "String",
    "uuid": "String", "base64Binary": "String", "xhtml": "String", "date": "Date", "dateTime": "DateTime",
    "instant": "DateTime", "time": "Time",
}
# FHIR complex type -> (System type, FHIRHelpers function)
HELPER_CONVERSIONS: dict[str, tuple[Any, str]] = {
    "CodeableConcept": ("Concept", "ToConcept"),
    "Coding": ("Code", "ToCode"),
    "Period": (("Interval", "DateTime"), "ToInterval"),
    "Range": (("Interval", "Quantity"), "ToInterval"),
    "Quantity": ("Quantity", "ToQuantity"),
    "Age": ("Quantity", "ToQuantity"),
    "Duration": ("Quantity", "ToQuantity"),
    "SimpleQuantity": ("Quantity", "ToQuantity"),
    "Distance": ("Quantity", "ToQuantity"),
    "Count": ("Quantity", "ToQuantity"),
    "MoneyQuantity": ("Quantity", "ToQuantity"),
    "Ratio": ("Ratio", "ToRatio"),
}


def local(t: str) -> str:
    return t.split(".", 1)[1] if t.startswith("FHIR.") else t


def system_target(t: Any) -> Any:
    """The System type a FHIR type converts to implicitly, or None."""
    if not isinstance(t, str) or not t.startswith("FHIR."):
        return None
    name = local(t)
    if name in PRIMITIVE_VALUES:
        return PRIMITIVE_VALUES[name]
    conv = HELPER_CONVERSIONS.get(name)
    if conv:
        return conv[0]
    return "String" if _is_code_type(name) else None


# R4 code types whose names are resources in the R4B model the engine navigates with
CODE_TYPES_SHADOWED = {"SubscriptionStatus"}


def _is_code_type(name: str) -> bool:
    return name[:1].isupper() and (name in CODE_TYPES_SHADOWED or fhirmodel.type_info(name) is None)


def is_primitive(name: str) -> bool:
    """Does a FHIR type convert to System through its ``value`` element?"""
    return name in PRIMITIVE_VALUES or _is_code_type(name)


def resolve_model_type(name: str, models: list[str]) -> str | None:
    """A type name of the FHIR or QI-Core model as a translator type (``FHIR.Encounter``), or None."""
    if name.startswith("FHIR."):
        return name
    bare = name.split(".", 1)[1] if name.startswith("QICore.") else name
    if bare in QICORE_PROFILES:
        return "FHIR." + QICORE_PROFILES[bare][0]
    if fhirmodel.type_info(bare) is not None or bare in PRIMITIVE_VALUES:
        return "FHIR." + bare
    if bare[:1].islower() and fhirmodel.type_info(bare[:1].upper() + bare[1:]) is not None:
        return "FHIR." + bare[:1].upper() + bare[1:]
    if bare[:1].isupper() and bare.isidentifier():
        return "FHIR." + bare  # a code type bound to a value set (AccountStatus ...): a code with a value
    return None


def template_id(name: str, models: list[str]) -> str:
    """The profile a retrieve of ``name`` asks for."""
    bare = name.split(".", 1)[1] if "." in name else name
    if bare in QICORE_PROFILES:
        prof = QICORE_PROFILES[bare][1]
        return prof if "/" in prof else QICORE_BASE + prof
    if "QICore" in models:
        return QICORE_BASE + "qicore-" + bare.lower()
    return FHIR_BASE + bare


def fhir_type(name: str) -> str:
    """The FHIR resource type a (possibly QI-Core) type name stands for."""
    bare = name.split(".", 1)[1] if "." in name else name
    return QICORE_PROFILES.get(bare, (bare, ""))[0]


def _element_type(f: fhirmodel.Field) -> Any:
    t = "FHIR." + f.type
    return ("List", t) if f.is_list else t


def property_type(t: str, name: str) -> Any:
    """The type of element ``name`` of FHIR type ``t``: a type, None when unknown, False when ``t`` has no
    such element."""
    ext = EXTENSION_ELEMENTS.get((t, name))
    if ext is not None:
        return ext[1]
    if t.startswith("QICore."):
        return False
    bare = local(t)
    if bare in PRIMITIVE_VALUES:
        if name == "value":
            return PRIMITIVE_VALUES[bare]
        if name == "id":
            return "String"
        if name == "extension":
            return ("List", "FHIR.Extension")
        return False
    if _is_code_type(bare):
        return "String" if name == "value" else None
    info = fhirmodel.type_info(bare)
    if info is None:
        return None
    f = info.fields.get(name)
    if f is not None:
        return _element_type(f)
    alts = info.choices.get(name)
    if alts:
        return ("Choice", tuple(dict.fromkeys("FHIR." + a.type for a in alts)))
    if name in ("id",):
        return "FHIR.string" if bare not in ("Resource",) else "FHIR.id"
    if name in ("extension", "modifierExtension"):
        return ("List", "FHIR.Extension")
    return False
