"""SMART on FHIR: discovery, client registry, authorization server, token validation, scope policy, audit.

Pure logic (``scopes``, ``policy``) is free of HTTP and database code; ``middleware`` is the single place
every /fhir request is authenticated and authorized.
"""
