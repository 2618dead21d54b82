"""FHIR kernel: errors, OperationOutcome, JSON, validation, dates. The only package importing fhir.resources."""
