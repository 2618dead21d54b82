"""FHIR R4 interoperability gateway for value-based care."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
