"""Bulk Data export (FHIR Bulk Data 2.0 with the cheap 3.0 additions): requests, jobs, worker, NDJSON."""
