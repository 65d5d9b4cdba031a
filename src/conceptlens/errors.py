"""One error type for everything a user can get wrong.

Every message names what was wrong and how to fix it; the CLI turns it into exit code 2 and
writes nothing (all outputs go through `conceptlens.storage`'s temporary-file-and-rename).
"""

from __future__ import annotations


class ConceptLensError(Exception):
    """A user-facing error: `problem` says what is wrong, `fix` says what to do instead."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} Fix: {fix}")


class NotComputable(ConceptLensError):
    """The measurement does not exist for this model or data (e.g. no block after a TD peak at the last
    layer). A command refuses it (exit 2); a multi-stage run records the stage as skipped and goes on."""


def require(condition: bool, problem: str, fix: str | None = None) -> None:
    """Raise `ConceptLensError(problem, fix)` unless `condition` holds."""
    if not condition:
        raise ConceptLensError(problem, fix)
