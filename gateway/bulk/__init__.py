"""Bulk Data (FHIR Bulk Data 2.0 with the cheap 3.0 additions, and bulk submission from the 4.0 ballot): the
declared operations (``declarations.py``, including ATR's ``$davinci-data-export`` and DEQM's
``$bulk-submit-data``), their handlers (``handlers.py``, ``submit_handlers.py``), export requests, the export
job kind (``runner.py``) and the bulk submission job kind (``submit.py``), both run by the job core's worker
(``gateway/resources/jobs.py``)."""
