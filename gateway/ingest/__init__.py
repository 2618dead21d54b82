"""Getting data in and out through the mappings: ``$ingest/{format}`` (``handler.py``, declared in
``declarations.py``) and ``fhir-gateway ingest`` on the ingest pipeline (``service.py``), claim version
chains (``claim_versions.py``), Bundle/resource/NDJSON file loading and the demo data load (``loader.py``)
and the internal-table extract (``extract.py``). The mapping engine itself is the ``gateway/mapping``
kernel."""
