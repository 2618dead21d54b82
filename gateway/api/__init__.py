"""Shared HTTP plumbing every capability's handlers use: content negotiation, ``Prefer`` and JSON bodies
(``http.py``), the FastAPI dependencies (``deps.py``), the caller's identity (``identity.py``), typed path
parameters (``paths.py``), operation parameters from a query or a Parameters body (``op_params.py``), the
route builder for the declared operations (``routes.py``) and the one error -> OperationOutcome handler
(``errors.py``). It imports no capability package; the app assembly is ``gateway/app.py``."""
