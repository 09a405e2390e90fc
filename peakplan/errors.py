"""The exception tree. Every error peakplan raises on purpose is a ``PeakplanError``.

``InputError`` is also a ``ValueError`` so callers that already catch bad values keep
working. Messages name the thing, state the rule and show the bad value; for tables they
name the file, the row and the column and list every problem found, not just the first.
"""

from __future__ import annotations

__all__ = [
    "ContractViolation",
    "InfeasibleError",
    "InputError",
    "PeakplanError",
    "SolverError",
    "TimeLimitError",
]


class PeakplanError(Exception):
    """Base class of every error raised by peakplan."""


class InputError(PeakplanError, ValueError):
    """A user input (scenario file, table, argument) breaks a stated rule.

    ``problems`` holds one line per problem; ``str(err)`` joins them under a headline.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        text = message
        if self.problems:
            shown = self.problems[:50]
            text += "\n" + "\n".join(f"  - {p}" for p in shown)
            if len(self.problems) > len(shown):
                text += f"\n  ... and {len(self.problems) - len(shown)} more"
        super().__init__(text)


class InfeasibleError(PeakplanError):
    """No plan meets the stated targets inside the stated limits.

    ``diagnosis`` lists which limits must move, and by how much, to restore feasibility.
    """

    def __init__(self, message: str, diagnosis: list[dict] | None = None) -> None:
        self.diagnosis = list(diagnosis or [])
        super().__init__(message)


class SolverError(PeakplanError):
    """The LP solver failed, was missing, or returned a solution that breaks a constraint."""


class TimeLimitError(SolverError):
    """A solve's time (or iteration) limit passed before it found a plan that keeps every constraint."""


class ContractViolation(PeakplanError):
    """An action or output breaks the governance contract."""
