"""Opaque NextToken values: keyset cursors, so pages stay correct while rows are added."""

from __future__ import annotations

import base64
import binascii

from compiler.errors import ValidationException

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
