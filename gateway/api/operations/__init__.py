"""FHIR operations, one module per operation, registered before the generic instance routes."""
