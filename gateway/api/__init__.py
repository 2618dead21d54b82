"""HTTP layer (FastAPI): routes parse, call a service, render. The only package importing FastAPI."""
