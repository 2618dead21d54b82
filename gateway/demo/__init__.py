"""The demo data set: a bundle, measures, synthetic patients and claims. Below the capability packages that load it,
so these constants live here and `ingest/loader.py` reads them (the claims generator needs them as well)."""

DEMO_PATIENTS = 200  # synthetic patients --demo adds (gateway.demo.synth), for the measurement period 2025
DEMO_SEED = 1
DEMO_PERIOD_YEAR = 2025
