"""The ELM (CQL 1.5) interpreter. Pure: no FastAPI, SQL or HTTP imports.

Runtime values (see ``values.py``): CQL null is Python ``None``; Boolean ``bool``; Integer ``int``; Decimal
``decimal.Decimal``; String ``str``; Date/DateTime/Time with precision (``datetime.py``); Quantity
(``quantity.py``); Interval (``interval.py``); Code and Concept (``values.py``); List ``list``; Tuple ``dict``.
"""
