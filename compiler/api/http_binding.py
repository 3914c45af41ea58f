"""Where each request member travels in Lookout for Vision's rest-json binding: in the URI (`{projectName}` is the
member ProjectName), the query string (NextToken, MaxResults of GET requests), a header (ClientToken, as
X-Amzn-Client-Token) or the JSON body. The server (`lookout-edge serve`) and the botocore service model both read
it from here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from compiler.api.api_model import OPERATIONS

CLIENT_TOKEN_HEADER = "X-Amzn-Client-Token"
QUERY_STRING_MEMBERS = {"NextToken": "nextToken", "MaxResults": "maxResults"}
BODY = "body"


@dataclass(frozen=True)
class Location:
    where: str  # "uri", "querystring", "header" or BODY
    name: str  # the name there (locationName); the member's own name in the body


def lower_camel(member: str) -> str:
    return member[0].lower() + member[1:]


def http_operations() -> dict[str, dict[str, Any]]:
    """The operations served over HTTP (every one with a binding), by name."""
    return {name: spec for name, spec in OPERATIONS.items() if "http" in spec}


def member_locations(operation: str) -> dict[str, Location]:
    """Each input member of `operation` → where it travels."""
    spec = OPERATIONS[operation]
    placeholders = set(re.findall(r"{(\w+)}", spec["http"]["uri"]))
    locations = {}
    for member in spec["input"]:
        if lower_camel(member) in placeholders:
            locations[member] = Location("uri", lower_camel(member))
        elif member == spec.get("idempotency"):
            locations[member] = Location("header", CLIENT_TOKEN_HEADER)
        elif spec["http"]["method"] == "GET" and member in QUERY_STRING_MEMBERS:
            locations[member] = Location("querystring", QUERY_STRING_MEMBERS[member])
        else:
            locations[member] = Location(BODY, member)
    unbound = placeholders - {loc.name for loc in locations.values() if loc.where == "uri"}
    if unbound:
        raise AssertionError(f"{operation}: URI placeholders without a member: {sorted(unbound)}")
    return locations
