"""Da Vinci DEQM and measure evaluation: one folder per operation, each holding its declaration
(``declaration.py``), its HTTP handler (``handler.py``) and, where it has one of its own, its use case
(``service.py``):

- ``evaluate_measure/`` ``Measure/$evaluate-measure``; ``evaluate/`` DEQM ``Measure/$evaluate``
- ``care_gaps/`` ``Measure/$care-gaps`` and ``Measure/$care-gaps-status``
- ``data_requirements/`` ``Measure/$data-requirements``
- ``submit_data/`` ``Measure/$submit-data`` (and ``$deqm-submit-data``)
- ``collect_data/`` ``Measure/$collect-data``

Shared by them: ``evaluation.py`` (``MeasureService``: libraries, value sets, compiled-measure cache,
subject evaluation), ``measure_select.py`` (which measures and patients a request names),
``measure_data.py`` and ``population.py`` (patient data loading and population runs), ``async_jobs.py``
(``Prefer: respond-async`` jobs), ``scorecard.py`` (the scorecard export) and ``parameters.py`` (pieces of
the declarations). ``declarations.py`` lists every DEQM operation for the app assembly. The engine kernels
below are ``gateway/measure`` and ``gateway/cql``."""
