"""What one advance did: :class:`AdvanceSummary`, merged across forked workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine.consent.wording import exited_label


@dataclass
class AdvanceSummary:
    at: datetime
    enrollments: int = 0  # due enrollments looked at
    messages: dict[str, int] = field(default_factory=dict)  # queued, per channel
    messages_skipped: dict[str, int] = field(default_factory=dict)  # per status_reason
    call_tasks: int = 0
    steps_skipped: dict[str, int] = field(default_factory=dict)  # per failing condition
    exited: int = 0
    exited_consent_not_stated: int = 0  # of those, with a channel closed for want of consent
    completed: int = 0  # enrollments that finished their last step
    waiting: int = 0  # enrollments whose next step is later
    lost: int = 0  # moved meanwhile by another advance, a conversion or a cancel
    runs_completed: list[int] = field(default_factory=list)
    runs_paused: dict[int, str] = field(default_factory=dict)  # run id -> why (render errors)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False  # the deadline came first; the rest is due next time
    processes: int = 1  # forked workers that shared the work (1: this process alone)
    seconds: float = 0.0

    @property
    def queued(self) -> int:
        return sum(self.messages.values())

    def merge(self, other: AdvanceSummary) -> None:
        """Add a forked worker's counts to these."""
        for name in ("enrollments", "call_tasks", "exited", "exited_consent_not_stated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("completed", "waiting", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in (
            (self.messages, other.messages),
            (self.messages_skipped, other.messages_skipped),
            (self.steps_skipped, other.steps_skipped),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.runs_paused.update(other.runs_paused)
        self.stopped_early = self.stopped_early or other.stopped_early

    @property
    def message(self) -> str:
        parts = [f"{self.enrollments:,} due enrollment(s)"]
        if self.messages:
            parts.append(
                "queued " + ", ".join(f"{n:,} {c}" for c, n in sorted(self.messages.items()))
            )
        if self.messages_skipped:
            parts.append(
                "skipped "
                + ", ".join(f"{n:,} ({r})" for r, n in sorted(self.messages_skipped.items()))
            )
        if self.call_tasks:
            parts.append(f"{self.call_tasks:,} call task(s)")
        if self.steps_skipped:
            parts.append(
                "steps not taken: "
                + ", ".join(f"{n:,} {c}" for c, n in sorted(self.steps_skipped.items()))
            )
        for label, count in (
            (exited_label(self.exited_consent_not_stated), self.exited),
            ("completed", self.completed),
            ("waiting", self.waiting),
            ("moved by someone else", self.lost),
        ):
            if count:
                parts.append(f"{count:,} {label}")
        if self.runs_completed:
            parts.append("runs completed: " + ", ".join(map(str, self.runs_completed)))
        text_ = "Advanced " + "; ".join(parts) + "."
        for run_id, reason in sorted(self.runs_paused.items()):
            text_ += f"\nRun {run_id} {reason}."
        return text_
