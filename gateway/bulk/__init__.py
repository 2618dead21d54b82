"""Bulk Data export (FHIR Bulk Data 2.0 with the cheap 3.0 additions): the declared operations
(``declarations.py``, including ATR's ``$davinci-data-export``), their handlers (``handlers.py``),
requests, jobs, worker, NDJSON."""
