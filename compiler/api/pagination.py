"""Opaque NextToken values: keyset cursors, so pages stay correct while rows are added."""

from __future__ import annotations

import base64
import binascii
import sqlite3
from typing import TYPE_CHECKING, Any

from compiler.api.api_model import OPERATIONS
from compiler.api.errors import ValidationException

if TYPE_CHECKING:
    from compiler.database import Database

DEFAULT_PAGE_SIZE = 100
_PREFIX = "lookout-edge:v1:"


def encode_token(scope: str, last_seq: int) -> str:
    """A token for the page after row `last_seq` of listing `scope`; matches ^[a-zA-Z0-9/+=]{0,2048}$."""
    return base64.b64encode(f"{_PREFIX}{scope}:{last_seq}".encode()).decode()


def decode_token(scope: str, token: str | None) -> int | None:
    """The `seq` to continue below, or None for the first page; ValidationException for foreign tokens."""
    if not token:
        return None
    try:
        text = base64.b64decode(token, validate=True).decode()
        prefix, _, seq = text.rpartition(":")
        if prefix != f"{_PREFIX}{scope}":
            raise ValueError(prefix)
        return int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationException(
            "Invalid NextToken: pass the NextToken from the previous response of the same list call unchanged."
        ) from exc


def page_rows(
    db: Database, scope: str, where_sql: str, params: tuple, key: str, next_token: str | None, max_results: int
) -> tuple[list[sqlite3.Row], str | None]:
    """One page of `SELECT * ... WHERE <where_sql>` ordered by `key` descending, and the next page's token."""
    after = decode_token(scope, next_token)
    rows = db.query(
        f"{where_sql} AND {key} < ? ORDER BY {key} DESC LIMIT ?",
        (*params, after if after is not None else 2**62, max_results + 1),
    )
    page = rows[:max_results]
    token = encode_token(scope, page[-1][key]) if len(rows) > max_results else None
    return page, token


def page_response(operation: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """A list operation's response: the page under the member its API model pages (`paginated`), and the
    NextToken when there is a next page."""
    response: dict[str, Any] = {OPERATIONS[operation]["paginated"]: items}
    if token:
        response["NextToken"] = token
    return response
