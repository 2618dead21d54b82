"""Internal records to FHIR and back, driven by the YAML mapping files (pure: no store, no HTTP)."""
