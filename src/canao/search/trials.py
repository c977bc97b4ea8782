"""The trial store: every evaluated candidate appended to SQLite under the run directory, so a search resumes.

One row per trial (in evaluation order): the controller's decision vector,
the candidate, its accuracy, predicted latency, search cost (latency, or
GFLOPs with the FLOPs proxy) and reward. A `run` table keeps the search's
settings; a store opened with other settings is refused, so a resumed search
is the same search. Each insert is its own committed transaction (SQLite's
journal makes it atomic): a search killed at any moment keeps every trial
that finished.

Example::

    store = TrialStore(Path("run/trials.sqlite"), settings)
    store.append(Trial(...))
    trials = store.trials()
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from canao.errors import CanaoError

STORE_VERSION = 1


class TrialStoreError(CanaoError, ValueError):
    """The trial store belongs to another search, or is not a canao trial store."""


@dataclass(frozen=True)
class Trial:
    decisions: tuple[int, ...]
    candidate: dict[str, Any]  # Candidate.to_dict()
    accuracy: float
    latency_ms: float  # predicted by the device profile
    cost: float  # what the reward weighed: latency_ms, or GFLOPs with the FLOPs proxy
    reward: float


class TrialStore:
    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.db = sqlite3.connect(str(path))
            self.db.execute("CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS trials (id INTEGER PRIMARY KEY, decisions TEXT NOT NULL, "
                "candidate TEXT NOT NULL, accuracy REAL NOT NULL, latency_ms REAL NOT NULL, cost REAL NOT NULL, "
                "reward REAL NOT NULL)"
            )
            self.db.commit()
        except sqlite3.DatabaseError as err:
            raise TrialStoreError(f"{path}: not a canao trial store ({err}); use another --out.") from err
        wanted = json.dumps({"version": STORE_VERSION, **settings}, sort_keys=True)
        row = self.db.execute("SELECT value FROM run WHERE key = 'settings'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO run VALUES ('settings', ?)", (wanted,))
        elif row[0] != wanted:
            raise TrialStoreError(
                f"{path} holds a search with other settings ({_difference(row[0], wanted)}); "
                "use another --out, or the same settings to resume it."
            )

    def append(self, trial: Trial) -> None:
        with self.db:  # one committed transaction per trial
            self.db.execute(
                "INSERT INTO trials (decisions, candidate, accuracy, latency_ms, cost, reward) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    json.dumps(list(trial.decisions)),
                    json.dumps(trial.candidate, sort_keys=True),
                    trial.accuracy,
                    trial.latency_ms,
                    trial.cost,
                    trial.reward,
                ),
            )

    def trials(self) -> list[Trial]:
        rows = self.db.execute(
            "SELECT decisions, candidate, accuracy, latency_ms, cost, reward FROM trials ORDER BY id"
        ).fetchall()
        return [Trial(tuple(json.loads(d)), json.loads(c), a, lat, cost, r) for d, c, a, lat, cost, r in rows]

    def close(self) -> None:
        self.db.close()


def _difference(stored: str, wanted: str) -> str:
    old, new = json.loads(stored), json.loads(wanted)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def trial_dict(trial: Trial) -> dict[str, Any]:
    return asdict(trial)
