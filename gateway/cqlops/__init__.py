"""The CPG CQL operations: ``Library/$evaluate`` (a stored library's definitions for a subject) and ``$cql``
(one ad-hoc CQL expression), over the built-in translator and ELM engine (``gateway/cql``), reading stored
data only through the authorization gate under the caller's grant."""
