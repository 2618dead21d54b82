"""Every DEQM operation, in the order the CapabilityStatement lists them; each is declared in its own folder
(``deqm/<operation>/declaration.py``) beside its handler and use case."""

from __future__ import annotations

from ..operations import Operation
from .care_gaps import declaration as care_gaps
from .collect_data import declaration as collect_data
from .data_requirements import declaration as data_requirements
from .evaluate import declaration as evaluate
from .evaluate_measure import declaration as evaluate_measure
from .submit_data import declaration as submit_data

OPERATIONS: tuple[Operation, ...] = (
    *evaluate_measure.OPERATIONS, *evaluate.OPERATIONS, *care_gaps.OPERATIONS, *data_requirements.OPERATIONS,
    *submit_data.OPERATIONS, *collect_data.OPERATIONS)
