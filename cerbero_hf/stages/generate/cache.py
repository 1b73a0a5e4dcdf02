"""The request-replay cache that makes ``generate`` resumable (re-run the same command to resume).

One sqlite row per finished generator request, keyed by ``(row id, position, attempt, payload hash)``:
the generator's answer, and once SelfChat has judged it, the verdict (accepted or the rejection
reason), the max similarity and, for accepted messages, the embedding. Re-running an interrupted
command with the same arguments replays every cached request without sending it, re-uses the recorded
verdicts (so the conversation follows the same path), and pre-loads the diversity store with every
accepted vector, so messages generated after the resume point are checked against everything accepted
before the interruption. Each entry is committed on its own (WAL journal), so Ctrl-C or SIGKILL loses at
most the requests in flight. Failed requests are not cached: a resume retries them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    row_id TEXT NOT NULL, position INTEGER NOT NULL, attempt INTEGER NOT NULL, payload TEXT NOT NULL,
    result TEXT NOT NULL, verdict_key TEXT, verdict TEXT, max_sim REAL, vector BLOB,
    PRIMARY KEY (row_id, position, attempt, payload))
"""


class RequestCache:
    """A sqlite replay cache (see module docstring). ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        return self._db

    def __getstate__(self) -> dict:
        return {"path": None if self.path == ":memory:" else self.path}

    def __setstate__(self, state: dict) -> None:
        RequestCache.__init__(self, state["path"])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def get(self, key: tuple) -> dict | None:
        """The cached entry for ``key`` = (row_id, position, attempt, payload_hash), or None."""
        cur = self.db.execute("SELECT result, verdict_key, verdict, max_sim FROM requests WHERE row_id=? AND "
                              "position=? AND attempt=? AND payload=?", key)
        row = cur.fetchone()
        if row is None:
            return None
        return {"result": json.loads(row[0]), "verdict_key": row[1], "verdict": row[2], "max_sim": row[3]}

    def put_result(self, key: tuple, result: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO requests (row_id, position, attempt, payload, result) "
                        "VALUES (?, ?, ?, ?, ?)", (*key, json.dumps(result, ensure_ascii=False)))

    def put_verdict(self, key: tuple, verdict_key: str, verdict: str, max_sim: float | None, vector=None) -> None:
        blob = None if vector is None else vector.astype("float32").tobytes()
        self.db.execute("UPDATE requests SET verdict_key=?, verdict=?, max_sim=?, vector=? WHERE row_id=? AND "
                        "position=? AND attempt=? AND payload=?", (verdict_key, verdict, max_sim, blob, *key))

    def accepted_vectors(self, verdict_key: str, dim: int):
        """Every accepted embedding recorded under ``verdict_key``, as an (n, dim) float32 array."""
        import numpy as np

        rows = self.db.execute("SELECT vector FROM requests WHERE verdict_key=? AND verdict='accepted' "
                               "AND vector IS NOT NULL ORDER BY rowid", (verdict_key,)).fetchall()
        if not rows:
            return np.zeros((0, dim), dtype="float32")
        return np.stack([np.frombuffer(r[0], dtype="float32") for r in rows])

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def count_entries(path: str | Path) -> int:
    """Finished requests in the replay cache at ``path`` (0 when there is none yet)."""
    if not Path(path).exists():
        return 0
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:  # created, but the table not yet
        return 0
    finally:
        db.close()
