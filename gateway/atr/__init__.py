"""Da Vinci Member Attribution (ATR 2.1): the member operations (``declarations.py``, ``handlers.py``),
their use cases on the store (``attribution.py``), member add/remove/confirm by list status
(``members.py``), and draft lists from claims (``claims_rule.py``, ``draft.py``, ``attribution_claims.py``).
The Group model and its profile rules, which every write checks, are the kernel modules
``gateway/fhir/atr_model.py`` and ``atr_rules.py``; ``$davinci-data-export`` runs on ``gateway/bulk``."""
