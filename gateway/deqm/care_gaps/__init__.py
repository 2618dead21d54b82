"""DEQM ``Measure/$care-gaps``: its declaration (``declaration.py``), HTTP handler (``handler.py``, with
the ``$care-gaps-status`` job endpoints) and use case (``service.py``); the gap rule and gaps-in-care Bundle
are the pure ``gateway/measure/gaps.py``."""
