"""Use cases joining the FHIR kernel, search and the store: REST semantics, transactions, loading."""
