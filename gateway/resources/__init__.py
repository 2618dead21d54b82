"""The REST semantics kernel every capability builds on: ``RestService`` (validation, conditional logic,
versions, search; ``rest.py``), batch and transaction Bundles (``transaction.py``), Bundle building
(``bundles.py``) and the ``X-Provenance`` header (``provenance_header.py``). No HTTP framework here; the
REST routes are in ``gateway/rest``."""
