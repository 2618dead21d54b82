"""``Measure/$data-requirements``: declaration and HTTP handler; the ELM walk is
``gateway/measure/data_requirements.py``."""
