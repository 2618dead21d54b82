"""``Measure/$evaluate-measure``: declaration and HTTP handler; the use case is ``deqm/evaluation.py``."""
