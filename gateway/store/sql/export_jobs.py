"""The rows of Bulk export jobs: since the job core, every asynchronous job lives in one table
(``store/sql/jobs.py``); this module keeps the old import path."""

from __future__ import annotations

from .jobs import ACTIVE, Job, JobStore

__all__ = ["ACTIVE", "Job", "JobStore"]
