"""DEQM ``Measure/$evaluate`` (several measures at once): declaration and HTTP handler; the use case is
``deqm/evaluation.py``."""
