"""Progress reporting: long operations name their current step through a ``Progress`` callable."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A ``Progress`` that reports nothing."""
