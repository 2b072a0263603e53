#!/usr/bin/env python3
"""Correctness check run by bench/run.sh before any timing.

  check.py json URL      GET URL; the JSON must carry the right typed values (a facade target)
  check.py soap URL      POST the GetItem envelope; body must equal backend/getitem-response.xml
  check.py xml  URL      GET URL (nginx pass-through); body must equal backend/getitem-response.xml
  check.py wsdl URL      GET URL?wsdl; body must equal backend/erp.wsdl

Exit 0 when correct, 1 with the reasons on stderr otherwise. Standard library only.
"""
import json
import os
import sys
import urllib.request
from datetime import datetime, timezone

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(BENCH, "backend", name), "rb") as f:
        return f.read()


def fetch(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


EXPECTED_LOCATIONS = [("MAIN", 100), ("EAST", 20.5), ("WEST", 5)]


def check_json(url):
    errs = []
    headers = {"Accept": "application/json"}
    if os.environ.get("GATEWAY_AUTH"):  # Veneer's bench config requires a bearer token
        headers["Authorization"] = os.environ["GATEWAY_AUTH"]
    status, ctype, body = fetch(url, headers=headers)
    if status != 200:
        return [f"HTTP {status}"]
    if "json" not in ctype.lower():
        errs.append(f"Content-Type is {ctype!r}, expected application/json")
    try:
        doc = json.loads(body.decode("utf-8"))
    except Exception as e:  # noqa: BLE001
        return errs + [f"body is not JSON: {e}: {body[:200]!r}"]
    if not isinstance(doc, dict):
        return errs + [f"top level is {type(doc).__name__}, expected an object"]

    def want(key, pred, desc):
        if key not in doc:
            errs.append(f"missing key {key!r}")
            return
        if not pred(doc[key]):
            errs.append(f"{key}: got {doc[key]!r}, expected {desc}")

    want("no", lambda v: v == "1000", 'the string "1000"')
    want("description", lambda v: v == 'City Bike 28" & Lights (\u00d8 622 mm)',
         "the unescaped UTF-8 text 'City Bike 28\" & Lights (\u00d8 622 mm)'")
    want("unitOfMeasure", lambda v: v == "PCS", '"PCS"')
    want("inventory", lambda v: is_number(v) and v == 125.5, "the number 125.5 (not a string)")
    want("blocked", lambda v: v is True, "the boolean true (not a string)")

    def same_instant(v):
        if not isinstance(v, str):
            return False
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return False
        if t.tzinfo is None:
            return False
        return t == datetime(2024, 5, 17, 9, 31, 4, tzinfo=timezone.utc)

    want("lastModified", same_instant, "an ISO 8601 string for 2024-05-17T09:31:04Z")

    locs = doc.get("locations")
    if not isinstance(locs, list):
        errs.append(f"locations: got {locs!r}, expected an array")
    elif len(locs) != 3:
        errs.append(f"locations: {len(locs)} entries, expected 3")
    else:
        for i, (loc, (code, qty)) in enumerate(zip(locs, EXPECTED_LOCATIONS)):
            if not isinstance(loc, dict):
                errs.append(f"locations[{i}]: got {loc!r}, expected an object")
                continue
            if loc.get("code") != code:
                errs.append(f"locations[{i}].code: got {loc.get('code')!r}, expected {code!r}")
            q = loc.get("quantity")
            if not (is_number(q) and q == qty):
                errs.append(f"locations[{i}].quantity: got {q!r}, expected the number {qty}")
    return errs


def check_exact(url, expected, data=None, headers=None):
    status, ctype, body = fetch(url, data=data, headers=headers)
    errs = []
    if status != 200:
        errs.append(f"HTTP {status}")
    if not ctype.lower().startswith("text/xml"):
        errs.append(f"Content-Type is {ctype!r}, expected text/xml")
    if body != expected:
        errs.append(f"body differs from the fixture ({len(body)} vs {len(expected)} bytes): {body[:120]!r}")
    return errs


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode, url = sys.argv[1], sys.argv[2]
    try:
        if mode == "json":
            errs = check_json(url)
        elif mode == "soap":
            errs = check_exact(url, read("getitem-response.xml"), data=read("getitem-request.xml"),
                               headers={"Content-Type": "text/xml; charset=utf-8",
                                        "SOAPAction": '"urn:example:erp/GetItem"'})
        elif mode == "xml":
            errs = check_exact(url, read("getitem-response.xml"))
        elif mode == "wsdl":
            errs = check_exact(url, read("erp.wsdl"))
        else:
            print(f"unknown mode {mode!r}", file=sys.stderr)
            return 2
    except Exception as e:  # noqa: BLE001
        errs = [f"request failed: {e}"]
    if errs:
        for e in errs:
            print(f"  FAIL {mode} {url}: {e}", file=sys.stderr)
        return 1
    print(f"  ok   {mode} {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
