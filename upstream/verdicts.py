"""What the rules say about one record before anything is sent (shared/STYLE.md, "One
definition per kind of push"): the preview, the API's 400 and a job's skip all read it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class VerdictKind(StrEnum):
    CHANGE = "change"
    SAME = "same"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str = ""
