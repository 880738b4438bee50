"""What the rules say about one record before anything is sent (shared/STYLE.md, "One
definition per kind of push"): the preview, the API's 400 and a job's skip all read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class VerdictKind(StrEnum):
    CHANGE = "change"
    SAME = "same"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str = ""


def _no_counts() -> dict[str, int]:
    return {kind.value: 0 for kind in VerdictKind}


@dataclass
class Preview:
    """What a confirmation page shows before anything is sent: how many records each verdict
    got, and why the blocked ones are blocked. Each kind of push adds what it previews."""

    counts: dict[str, int] = field(default_factory=_no_counts)
    blocked_reasons: dict[str, int] = field(default_factory=dict)

    def tally(self, verdict: Verdict, n: int = 1) -> None:
        self.counts[verdict.kind.value] = self.counts.get(verdict.kind.value, 0) + n
        if verdict.kind == VerdictKind.BLOCKED:
            self.blocked_reasons[verdict.reason] = self.blocked_reasons.get(verdict.reason, 0) + n

    @property
    def will_change(self) -> int:
        return self.counts.get(VerdictKind.CHANGE.value, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
