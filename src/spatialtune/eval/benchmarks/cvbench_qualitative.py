"""CV-Bench qualitative: CV-Bench (`cvbench.py`) without Count, i.e. Relation, Depth and Distance only (the tasks the
qualitative-relations builder trains)."""

from __future__ import annotations

from . import register
from .cvbench import CVBench


@register
class CVBenchQualitative(CVBench):
    """CV-Bench without Count: the qualitative relations Relation, Depth and Distance."""

    name = "cvbench-qualitative"
    tasks = ("Relation", "Depth", "Distance")
