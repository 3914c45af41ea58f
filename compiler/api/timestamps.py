"""Timestamps: stored as epoch seconds, returned as timezone-aware datetimes (boto3 does the same)."""

from __future__ import annotations

import datetime as dt
import json


def to_datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def _encode(value: object) -> object:
    if isinstance(value, dt.datetime):
        return {"$epoch": value.timestamp()}
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _decode(obj: dict) -> object:
    return to_datetime(obj["$epoch"]) if set(obj) == {"$epoch"} else obj


def dumps(value: object) -> str:
    """JSON that keeps datetimes (for stored responses that are replayed later)."""
    return json.dumps(value, default=_encode)


def loads(text: str) -> object:
    return json.loads(text, object_hook=_decode)
