"""SigV4 checks of incoming requests, with botocore's own signer (no hand-written crypto): the signature the
caller's credentials would give this exact request, compared with the one it carries."""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from compiler.api.errors import AccessDeniedException

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)  # AWS's own limit


def _denied(why: str) -> AccessDeniedException:
    return AccessDeniedException(f"The request signature is not valid: {why}.")


def check_signature(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    service: str,
    now: dt.datetime | None = None,
) -> str:
    """The access key that signed the request; AccessDeniedException when it is unsigned, signed by a key not in
    `credentials` (access key → secret key), outside the clock-skew window, or its signature does not match."""
    match = AUTHORIZATION.fullmatch(headers.get("authorization", "").strip())
    if not match:
        raise _denied("it carries no AWS4-HMAC-SHA256 Authorization header")
    key = match["key"]
    if key not in credentials:
        raise _denied(f"access key {key[:32]!r} is not configured on this server")
    if match["service"] != service:
        raise _denied(f"it was signed for service {match['service'][:32]!r}, not {service!r}")
    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise _denied("its X-Amz-Date header is missing or malformed") from None
    if abs((now or dt.datetime.now(dt.timezone.utc)) - signed_at) > MAX_CLOCK_SKEW:
        raise _denied("it was signed more than 15 minutes away from this server's clock")
    signed = match["headers"].split(";")
    if "host" not in signed or any(name not in headers for name in signed):
        raise _denied("a header it says it signed is missing")
    request = AWSRequest(method=method, url=url, data=body, headers={name: headers[name] for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key, credentials[key]), service, match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _denied("the signature does not match (wrong secret key, or the request was changed in transit)")
    return key
