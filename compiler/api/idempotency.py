"""ClientToken idempotency, as in Lookout for Vision: for 8 hours a request repeated with the same token gets
the first request's result instead of running again, and the same token with other parameters is refused.

The outcome is stored by the operation itself, in the same transaction as what it created (`settle`), so a
process that dies in between cannot leave a token "in progress" for a request that did happen; a claim whose
process died before that transaction committed is stale, and the retry runs the request again.
"""

from __future__ import annotations

import contextvars
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from compiler.api import timestamps
from compiler.api.errors import ConflictException
from compiler.database import Database

CLIENT_TOKEN_TTL = 8 * 3600  # ClientToken idempotency window, as in Lookout for Vision


@dataclass(frozen=True)
class Claim:
    operation: str
    token: str


_current: contextvars.ContextVar[Claim | None] = contextvars.ContextVar("client_token_claim", default=None)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(db: Database, operation: str, token: str, request_hash: str, resource_type: str) -> Any | None:
    """The stored result of an earlier request with this token, or None after claiming the token for this one."""
    now = time.time()
    with db.transaction() as conn:
        conn.execute("DELETE FROM client_tokens WHERE created < ?", (now - CLIENT_TOKEN_TTL,))
        row = conn.execute(
            "SELECT * FROM client_tokens WHERE operation = ? AND token = ?", (operation, token)
        ).fetchone()
        stale = row is not None and not row["result"] and not _alive(row["claimer_pid"])
        if row is None or stale:
            conn.execute(
                "INSERT OR REPLACE INTO client_tokens (operation, token, request_hash, result, created, claimer_pid) "
                "VALUES (?, ?, ?, '', ?, ?)",
                (operation, token, request_hash, now, os.getpid()),
            )
            return None
    if row["request_hash"] != request_hash:
        raise ConflictException(
            f"ClientToken '{token}' was already used with different parameters in the last 8 hours. Use a new "
            "ClientToken for a different request.",
            token,
            resource_type,
        )
    if not row["result"]:
        raise ConflictException(f"A request with ClientToken '{token}' is still in progress.", token, resource_type)
    return timestamps.loads(row["result"])


@contextmanager
def handling(db: Database, operation: str, token: str) -> Iterator[None]:
    """Run the claimed request: its operation settles the token; if it fails, the claim is released."""
    marker = _current.set(Claim(operation, token))
    try:
        yield
    except BaseException:
        with db.transaction() as conn:
            conn.execute("DELETE FROM client_tokens WHERE operation = ? AND token = ?", (operation, token))
        raise
    finally:
        _current.reset(marker)


def settle(conn: sqlite3.Connection, result: dict[str, Any]) -> dict[str, Any]:
    """Store `result` as the outcome of the request being handled (when it carries a ClientToken), inside the
    caller's transaction, the one that makes the request's effect; returns `result`."""
    current = _current.get()
    if current is not None:
        conn.execute(
            "UPDATE client_tokens SET result = ? WHERE operation = ? AND token = ?",
            (timestamps.dumps(result), current.operation, current.token),
        )
    return result
