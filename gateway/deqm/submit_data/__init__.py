"""``Measure/$submit-data`` (and DEQM's ``$deqm-submit-data``): declaration, HTTP handler and use case."""
