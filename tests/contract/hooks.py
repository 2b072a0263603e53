"""Schemathesis hooks for the contract test (tests/openapi.rs).

Two rules of the gateway depend on state or on the clock rather than on the request alone, so
no OpenAPI schema can state them. These hooks make generated requests behave as a real client
does, and change nothing else (a value the schema forbids is left as generated, so negative
tests still see it):

- An Idempotency-Key names one request. A client never sends one key with two payloads (that
  is a 422 by design, tested in tests/queued_delivery.rs), so each valid generated key gets
  a digest of the request's path and payload appended and stays valid: one payload, one key.
- A reading's timestamp must lie within telemetry.max_age back and max_ahead ahead of now.
  A valid generated timestamp is moved to now, keeping its form (text or epoch ms).
"""

import hashlib
import json
import math
import re
import time

import schemathesis

_VCHAR = re.compile(r"^[!-~]{1,255}$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
# The schema's epoch-millisecond bounds (src/openapi/telemetry.rs).
_MIN_MS, _MAX_MS = -8_334_601_228_800_000, 8_210_266_876_799_999


def _now(value):
    if isinstance(value, str) and _RFC3339.match(value):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # An integer in JSON Schema's sense: 5 and 5.0 alike.
    integral = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if integral and not isinstance(value, bool) and _MIN_MS <= value <= _MAX_MS:
        return int(time.time() * 1000)
    return value


# `map_case`, not `map_headers`/`map_body`: the coverage phase applies only case hooks.
@schemathesis.hook
def map_case(context, case):
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and _VCHAR.match(key):
        request = json.dumps([case.formatted_path, case.path_parameters, case.body], sort_keys=True, default=str)
        suffix = "-" + hashlib.sha256(request.encode()).hexdigest()[:16]
        case.headers["Idempotency-Key"] = key[: 255 - len(suffix)] + suffix
    if case.operation.path == "/telemetry":
        readings = case.body if isinstance(case.body, list) else [case.body]
        for reading in readings:
            if isinstance(reading, dict):
                for field in ("timestamp", "time", "ts"):
                    if field in reading:
                        reading[field] = _now(reading[field])
    return case
