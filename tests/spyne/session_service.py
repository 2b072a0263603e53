#!/usr/bin/env python3
"""Small real SOAP 1.1 server (spyne) simulating a session-based ERP, used as a
backend by the gateway's e2e tests.

Modelled on SAP Business One's DI web services: Login returns a session id, and
every business call carries it in a SOAP header (MsgHeader/SessionID). An
unknown, expired or missing session gets the fault "Invalid session or session
already timed out." Counters (Stats, a JSON string) let a test see how many
logins, overlapping calls on one session and bookings the gateway caused.

Usage: python3 tests/spyne/session_service.py --port PORT [--password PW]
           [--idle SECONDS] [--call-ms MS]
  --password  the one accepted password (default "secret")
  --idle      seconds a session may stay unused before it is unknown
              (default 0: sessions never idle-expire)
  --call-ms   how long GetStock/PostReading sleep while holding their session
              (default 20), so concurrent use of one session is observable
Binds 127.0.0.1 only; prints "LISTENING 127.0.0.1:PORT" once bound; WSDL at
GET /?wsdl.
"""
import argparse
import json
import sys
import threading
import time
import uuid

from spyne import (Application, ComplexModel, Decimal, Fault, Integer, Service,
                   Unicode, rpc)
from spyne.protocol.soap import Soap11

import serving

TNS = "urn:veneer:test:sessions"

# SAP B1's exact reason text: the gateway recognises a dead session by it.
SESSION_FAULT = "Invalid session or session already timed out."

# Set from the command line in main().
CONFIG = {"password": "secret", "idle": 0.0, "call_s": 0.02}

# All shared state below is guarded by LOCK.
LOCK = threading.Lock()
# session id -> {"last": monotonic time of last use, "busy": calls in flight}
SESSIONS = {}
COUNTERS = {}
# ReadingId -> times booked (PostReading is deliberately not idempotent).
BOOKINGS = {}
# session id -> business calls served; kept after logout/expiry so a test can
# see how calls spread over sessions.
SESSION_CALLS = {}


def _zero_counters():
    COUNTERS.update(login_attempts=0, logins=0, login_failures=0, logouts=0,
                    overlaps=0, calls=0, expired=0, idle_expired=0,
                    session_faults=0, in_flight=0, peak_in_flight=0)


_zero_counters()


class MsgHeader(ComplexModel):
    __namespace__ = TNS
    _type_info = [("SessionID", Unicode)]


# spyne 2.14 asserts _in_header is a tuple (a bare class fails at import).
IN_HEADER = (MsgHeader,)


def _purge_idle(now):
    """Drop sessions unused for longer than --idle. Caller holds LOCK."""
    idle = CONFIG["idle"]
    if idle <= 0:
        return
    # A session with a call in flight is in use, so it never idles out.
    dead = [sid for sid, s in SESSIONS.items()
            if s["busy"] == 0 and now - s["last"] > idle]
    for sid in dead:
        del SESSIONS[sid]
    COUNTERS["idle_expired"] += len(dead)


def _session_id(ctx):
    header = ctx.in_header
    return getattr(header, "SessionID", None) if header is not None else None


def _session_fault():
    return Fault(faultcode="Client", faultstring=SESSION_FAULT)


def _begin(ctx):
    """Claim the caller's session for one business call; returns its id.

    Check-and-set under LOCK, so two calls racing on one session always see
    each other and exactly one of them counts as an overlap.
    """
    sid = _session_id(ctx)
    now = time.monotonic()
    with LOCK:
        _purge_idle(now)
        s = SESSIONS.get(sid)
        if s is None:
            COUNTERS["session_faults"] += 1
            raise _session_fault()
        if s["busy"] > 0:
            COUNTERS["overlaps"] += 1
        s["busy"] += 1
        s["last"] = now
        COUNTERS["calls"] += 1
        # Business calls running at once over every session: what a
        # max_concurrency promises the ERP.
        COUNTERS["in_flight"] += 1
        COUNTERS["peak_in_flight"] = max(COUNTERS["peak_in_flight"],
                                         COUNTERS["in_flight"])
        SESSION_CALLS[sid] = SESSION_CALLS.get(sid, 0) + 1
    return sid


def _end(sid):
    with LOCK:
        COUNTERS["in_flight"] -= 1
        # The session may have been dropped meanwhile (Logout, ExpireAll,
        # Reset); then there is nothing to release.
        s = SESSIONS.get(sid)
        if s is not None:
            s["busy"] -= 1
            s["last"] = time.monotonic()


class SessionService(Service):
    @rpc(Unicode, Unicode, Unicode, _returns=Unicode,
         _out_variable_name="SessionID")
    def Login(ctx, Company, UserName, Password):
        with LOCK:
            COUNTERS["login_attempts"] += 1
            if Password != CONFIG["password"]:
                COUNTERS["login_failures"] += 1
                raise Fault(faultcode="Client.Login",
                            faultstring="Invalid user name or password")
            sid = uuid.uuid4().hex
            SESSIONS[sid] = {"last": time.monotonic(), "busy": 0}
            COUNTERS["logins"] += 1
            return sid

    @rpc(_in_header=IN_HEADER)
    def Logout(ctx):
        sid = _session_id(ctx)
        with LOCK:
            _purge_idle(time.monotonic())
            if SESSIONS.pop(sid, None) is None:
                COUNTERS["session_faults"] += 1
                raise _session_fault()
            COUNTERS["logouts"] += 1

    @rpc(Unicode(min_occurs=1, nillable=False), _in_header=IN_HEADER,
         _returns=Integer, _out_variable_name="Quantity")
    def GetStock(ctx, ItemCode):
        sid = _begin(ctx)
        try:
            time.sleep(CONFIG["call_s"])
            # Deterministic, so a test can predict the answer.
            return len(ItemCode) * 10
        finally:
            _end(sid)

    @rpc(Unicode(min_occurs=1, nillable=False),
         Decimal(min_occurs=1, nillable=False), _in_header=IN_HEADER,
         _returns=Integer, _out_variable_name="Booked")
    def PostReading(ctx, ReadingId, Value):
        sid = _begin(ctx)
        try:
            time.sleep(CONFIG["call_s"])
            with LOCK:
                BOOKINGS[ReadingId] = BOOKINGS.get(ReadingId, 0) + 1
                return BOOKINGS[ReadingId]
        finally:
            _end(sid)

    @rpc()
    def ExpireAll(ctx):
        # Simulates the ERP restarting or timing every session out at once.
        with LOCK:
            COUNTERS["expired"] += len(SESSIONS)
            SESSIONS.clear()

    @rpc(Unicode)
    def SetPassword(ctx, Password):
        # An administrator changes the account's password; sessions live on.
        with LOCK:
            CONFIG["password"] = Password

    @rpc(_returns=Unicode)
    def Stats(ctx):
        with LOCK:
            _purge_idle(time.monotonic())
            return json.dumps(dict(COUNTERS, live_sessions=len(SESSIONS),
                                   bookings=BOOKINGS,
                                   session_calls=SESSION_CALLS))

    @rpc()
    def Reset(ctx):
        # Lets one server process serve several tests.
        with LOCK:
            _zero_counters()
            SESSIONS.clear()
            BOOKINGS.clear()
            SESSION_CALLS.clear()


application = Application(
    [SessionService], tns=TNS, name="SessionService",
    in_protocol=Soap11(validator="lxml"), out_protocol=Soap11(),
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--password", default="secret")
    ap.add_argument("--idle", type=float, default=0.0)
    ap.add_argument("--call-ms", type=float, default=20.0)
    args = ap.parse_args()
    CONFIG.update(password=args.password, idle=args.idle,
                  call_s=args.call_ms / 1000.0)

    return serving.serve(application, args.port)


if __name__ == "__main__":
    sys.exit(main())
