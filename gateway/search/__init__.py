"""Search parameter definitions, index extraction and query parsing (store-neutral)."""
