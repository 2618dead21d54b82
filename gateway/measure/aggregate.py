"""Population results folded in as they arrive, so a population run keeps no per-patient result.

A summary or subject-list MeasureReport needs, per group, the population counts, the measure observations
(continuous-variable scores), the strata counts, and, for the report, the supplemental-data tallies and the
evaluation messages; a subject-list report also needs, per population, the subjects in it. ``ReportTally``
takes one ``SubjectResult`` at a time (``add``) and keeps only those: the episode resources, observed values
of other scorings, per-subject supplemental values and bookkeeping of a result are dropped with it.

Everything it keeps is bounded by the measure, not by the number of subjects — counts, one counter per
stratum, one per distinct supplemental value, at most ``MAX_MESSAGES`` distinct messages, and the distinct
observed values of continuous-variable groups (a median needs them; identical values share one counter) —
except the subject lists of a subject-list report, which are written to a temporary file as they arrive and
read back only when the report is built (the report lists them all, so it is as large as the population).

Tallies of consecutive runs of subjects merge (``merge``) into the tally of the whole run: a process pool or a
Dask cluster folds each chunk in its worker and sends back only the chunk's tally, and the caller merges the
tallies in subject order, which gives the report a subject-by-subject evaluation would give, to the byte.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from decimal import Decimal
from typing import IO, Any

from .calculator import SubjectResult
from .model import MeasureDef
from .supplemental import SdeValue

MAX_MESSAGES = 100  # distinct messages a report names (report.MAX_MESSAGES); later ones are not kept
SPOOL_EVERY = 2000  # subject-list entries kept in memory before they are appended to the spool file


class GroupTally:
    """One group's part of a population report."""

    __slots__ = ("counts", "observed", "strata", "seen")

    def __init__(self, n_stratifiers: int) -> None:
        self.counts: Counter[str] = Counter()
        self.observed: Counter[str] = Counter()  # Decimal text of each observed value -> how many
        self.strata: list[dict[str, Counter[str]]] = [{} for _ in range(n_stratifiers)]
        self.seen = False  # a subject was added: the report then lists the stratifiers

    def merge(self, other: GroupTally) -> None:
        self.counts.update(other.counts)
        for code in other.counts:  # a population seen with no members still reports 0
            self.counts.setdefault(code, 0)
        self.observed.update(other.observed)
        for mine, theirs in zip(self.strata, other.strata, strict=True):
            for value, counts in theirs.items():
                mine.setdefault(value, Counter()).update(counts)
        self.seen = self.seen or other.seen

    def observations(self) -> list[Decimal]:
        """The observed values (in no particular order: a score only needs the multiset)."""
        out: list[Decimal] = []
        for text, n in self.observed.items():
            out.extend([Decimal(text)] * n)
        return out


class SdeTally:
    """One supplemental data element: subjects per value, values in the order first seen (a report numbers
    its contained Observations by that order, resource values included). Distinct values are what it keeps:
    codes (sex, race, ethnicity, payer) are few; an SDE whose values are resources grows with them."""

    __slots__ = ("counts", "values")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.values: dict[str, SdeValue] = {}

    def add_values(self, values: list[SdeValue]) -> None:
        for v in values:
            self.values.setdefault(v.key, v)
            self.counts[v.key] += 1

    def merge(self, other: SdeTally) -> None:
        for key, v in other.values.items():
            self.values.setdefault(key, v)
            self.counts[key] += other.counts[key]


class ReportTally:
    """What a population (summary or subject-list) MeasureReport needs, folded in subject by subject."""

    def __init__(self, measure: MeasureDef, subject_lists: bool = False, spool: bool = True) -> None:
        self.subjects = 0
        self.groups = [GroupTally(len(g.stratifiers)) for g in measure.groups]
        self.cv = [g.scoring == "continuous-variable" for g in measure.groups]
        self.sdes: dict[str, SdeTally] = {sid or expr: SdeTally() for sid, expr in measure.supplemental}
        self.messages: dict[str, int] = {}
        self.subject_lists = subject_lists
        self.spool = spool  # False in a worker: its chunk's lists travel back with its tally
        self.lists: dict[tuple[int, str], list[str]] = {}
        self._pending = 0
        self._file: IO[str] | None = None
        self._offsets: dict[tuple[int, str], list[tuple[int, int]]] = {}

    # -- folding in -----------------------------------------------------------------------------------------
    def add(self, result: SubjectResult) -> None:
        self.subjects += 1
        for gi, gr in enumerate(result.groups):
            tally = self.groups[gi]
            tally.seen = True
            for code, keys in gr.members.items():
                tally.counts[code] += len(keys)
                if self.subject_lists and keys:
                    self.lists.setdefault((gi, code), []).append(result.subject)
                    self._pending += 1
            if self.cv[gi]:
                for _target, _key, v in gr.observations:
                    if v is not None:
                        tally.observed[str(Decimal(str(getattr(v, "value", v))))] += 1
            for si, mapping in gr.strata:
                per_value = tally.strata[si]
                for code, keys in gr.members.items():
                    for k in keys:
                        value = mapping.get(k)
                        if value is not None:
                            per_value.setdefault(value, Counter())[code] += 1
                for value in set(mapping.values()):
                    per_value.setdefault(value, Counter())
        for ref_id, values in result.supplemental.items():
            sde = self.sdes.get(ref_id)
            if sde is not None:
                sde.add_values(values)
        for m in result.messages:
            self._message(m, 1)
        if self.spool and self._pending >= SPOOL_EVERY:
            self._flush()

    def _message(self, text: str, n: int) -> None:
        if text in self.messages:
            self.messages[text] += n
        elif len(self.messages) < MAX_MESSAGES:
            self.messages[text] = n

    def merge(self, other: ReportTally) -> None:
        """Fold in the tally of the subjects that come right after this tally's."""
        self.subjects += other.subjects
        for mine, theirs in zip(self.groups, other.groups, strict=True):
            mine.merge(theirs)
        for ref_id, sde in other.sdes.items():
            self.sdes.setdefault(ref_id, SdeTally()).merge(sde)
        for text, n in other.messages.items():
            self._message(text, n)
        if self.subject_lists:
            for key, subjects in other.read_lists().items():
                self.lists.setdefault(key, []).extend(subjects)
                self._pending += len(subjects)
            if self.spool and self._pending >= SPOOL_EVERY:
                self._flush()

    # -- subject lists --------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self.lists:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="gw-subjects-")  # noqa: SIM115
        self._file.seek(0, os.SEEK_END)
        for key, subjects in self.lists.items():
            text = "\n".join(subjects) + "\n"
            start = self._file.tell()
            self._file.write(text)
            self._offsets.setdefault(key, []).append((start, len(subjects)))
        self.lists = {}
        self._pending = 0

    def members(self, gi: int, code: str) -> list[str]:
        """The subjects in population ``code`` of group ``gi``, in subject order (subject-list reports)."""
        out: list[str] = []
        if self._file is not None:
            self._file.flush()
            for start, n in self._offsets.get((gi, code), []):
                self._file.seek(start)
                out.extend(self._file.readline().rstrip("\n") for _ in range(n))
        out.extend(self.lists.get((gi, code), []))
        return out

    def read_lists(self) -> dict[tuple[int, str], list[str]]:
        keys = set(self.lists) | set(self._offsets)
        return {k: self.members(*k) for k in sorted(keys)}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._offsets = {}

    def __getstate__(self) -> dict[str, Any]:  # a worker's tally (never spooled) crosses to the caller
        state = dict(self.__dict__)
        if state.get("_file") is not None:
            state["lists"] = self.read_lists()
            state["_file"], state["_offsets"] = None, {}
        return state
