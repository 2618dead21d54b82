"""DEQM ``Measure/$collect-data``: declaration, HTTP handler and use case."""
