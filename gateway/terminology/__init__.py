"""Terminology operations: ValueSet $expand and $validate-code, CodeSystem $lookup and $subsumes."""
