"""How many restarts of each deployment this machine has already carried out (`applied.json`)."""

from __future__ import annotations

from pathlib import Path

from tingyu.agent.statefile import read_json, write_json


class AppliedRestarts:
    """Per deployment, the `restarts` counter of the desired state last acted on.

    Without a path it lives in memory only (a simulated machine has no disk of its own).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        stored = read_json(path) if path else None
        self._counts: dict[str, int] = {str(k): int(v) for k, v in (stored or {}).items()}
        self._dirty = False

    def get(self, name: str) -> int | None:
        return self._counts.get(name)

    def set(self, name: str, restarts: int) -> None:
        if self._counts.get(name) != restarts:
            self._counts[name] = restarts
            self._dirty = True

    def forget(self, name: str) -> None:
        if self._counts.pop(name, None) is not None:
            self._dirty = True

    def names(self) -> list[str]:
        return list(self._counts)

    def changes(self) -> dict[str, int] | None:
        """The counts to write (a copy) when something changed since the last call, else None."""
        changed, self._dirty = self._dirty and self.path is not None, False
        return dict(self._counts) if changed else None

    def write(self, counts: dict[str, int]) -> None:
        """Write `counts` (from `changes`) atomically: a crash keeps the old file whole."""
        if self.path is not None:
            write_json(self.path, counts)

    def save(self) -> None:
        """Write when something changed."""
        counts = self.changes()
        if counts is not None:
            self.write(counts)
