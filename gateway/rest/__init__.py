"""The RESTful API capability: the instance, type and system interaction routes (``instance.py``,
``type_level.py``, ``system.py``: CRUD, search, history, batch/transaction, health), the CapabilityStatement
(``capability.py``) and ``[type]/$validate`` (``validate.py``, declared in ``declarations.py``). The use
cases behind them are the ``gateway/resources`` kernel."""
