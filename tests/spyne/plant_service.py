#!/usr/bin/env python3
"""Small real SOAP 1.1 server (spyne) used as a backend by the gateway's e2e tests.

Usage: python3 tests/spyne/plant_service.py --port PORT
Binds 127.0.0.1 only; WSDL at GET /?wsdl.
"""
import argparse
import datetime
import json
import time
import sys
from decimal import Decimal as D

from spyne import (Application, Array, Boolean, ComplexModel, DateTime, Decimal,
                   Fault, Service, Unicode, rpc)
from spyne.protocol.soap import Soap11

import serving

TNS = "urn:veneer:test:plant"
UTC = datetime.timezone.utc


class Part(ComplexModel):
    __namespace__ = TNS
    # A list of pairs (not class attributes) pins the element order in the
    # WSDL and in responses, which the tests assert on.
    _type_info = [
        ("PartNo", Unicode),
        ("Description", Unicode),
        ("Price", Decimal),
        ("Active", Boolean),
        ("UpdatedAt", DateTime),
        ("Tags", Array(Unicode)),
    ]


class Measurement(ComplexModel):
    __namespace__ = TNS
    # Same fields, in the same order, as RecordMeasurement's parameters.
    _type_info = [
        ("ReadingId", Unicode(min_occurs=1, nillable=False)),
        ("Sensor", Unicode(min_occurs=1, nillable=False)),
        ("Machine", Unicode),
        ("Value", Decimal(min_occurs=1, nillable=False)),
        ("Unit", Unicode(min_occurs=1, nillable=False)),
        ("Timestamp", DateTime(min_occurs=1, nillable=False)),
        ("WorkCenter", Unicode),
        ("Shift", Unicode),
        ("OrderNo", Unicode),
    ]


PARTS = {
    # 17 integer digits + 6 fraction digits: more than an f64 can hold, so the
    # tests can prove the gateway never round-trips Price through a float.
    "P-1": dict(Description="Hex bolt M8", Price=D("12345678901234567.123456"),
                Active=True, UpdatedAt=datetime.datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
                Tags=["steel", "m8", "din933"]),
    # Exactly one tag: exercises single-element arrays (no "object instead of list").
    "P-2": dict(Description="Washer", Price=D("0.05"), Active=False,
                UpdatedAt=datetime.datetime(2026, 10, 15, 12, 0, tzinfo=UTC),
                Tags=["zinc"]),
}

import threading
LOCK = threading.Lock()
BOOKED = {}
ARRIVALS = {}
STATE = {"allow_negative": False}
# Measurements (RecordMeasurement/RecordMeasurements): ReadingId -> all fields as
# received (Value as the decimal's text, Timestamp as ISO 8601).
MEASUREMENTS = {}
# SOAP calls per operation, so a test can see how many calls grouped readings took.
CALLS = {"RecordMeasurement": 0, "RecordMeasurements": 0, "CurrentOrder": 0}
# Measurements skipped by RecordMeasurements because their ReadingId was booked.
MSTATE = {"duplicates": 0}
# Released production order per machine (CurrentOrder).
ORDERS = {"PRESS-01": "PO-1001", "PRESS-02": "PO-1002"}


def _measurement_fields(ReadingId, Sensor, Machine, Value, Unit, Timestamp,
                        WorkCenter, Shift, OrderNo):
    return {
        "ReadingId": ReadingId, "Sensor": Sensor, "Machine": Machine,
        "Value": None if Value is None else format(Value, "f"), "Unit": Unit,
        "Timestamp": None if Timestamp is None else Timestamp.isoformat(),
        "WorkCenter": WorkCenter, "Shift": Shift, "OrderNo": OrderNo,
    }


# Mandatory inputs: the lxml validator then rejects requests that omit them or
# send xsi:nil. In the WSDL this shows as *no* minOccurs/nillable attribute
# (spyne leaves out XSD defaults) rather than a literal minOccurs="1".
Req = dict(min_occurs=1, nillable=False)


class PlantService(Service):
    @rpc(Unicode, _returns=Part)
    def GetPart(ctx, PartNo):
        data = PARTS.get(PartNo)
        if data is None:
            raise Fault(faultcode="Client.NotFound",
                        faultstring="Part %s not found" % PartNo)
        return Part(PartNo=PartNo, **data)

    @rpc(Unicode, _returns=Unicode)
    def Echo(ctx, Text):
        return Text

    @rpc(Unicode(**Req), Unicode, Decimal(**Req), Boolean(**Req), _returns=Part)
    def CreatePart(ctx, PartNo, Description, Price, Active):
        if Price < 0:
            raise Fault(faultcode="Client.Validation",
                        faultstring="Price must not be negative")
        return Part(PartNo=PartNo, Description=Description, Price=Price,
                    Active=Active,
                    UpdatedAt=datetime.datetime(2026, 11, 25, tzinfo=UTC),
                    Tags=["new"])

    # Readings: a duplicate-refusing booking, as ERPs refuse a duplicate external
    # document number. BOOKED counts bookings per reading id (the test asserts every
    # accepted reading was booked exactly once); ARRIVALS keeps the order per machine.
    @rpc(Unicode(**Req), Unicode(**Req), Decimal(**Req), _returns=Unicode)
    def RecordReading(ctx, ReadingId, Machine, Value):
        if Machine == "slow":
            # A slow ERP call, so a test can kill a gateway while calls are in flight.
            time.sleep(0.5)
        with LOCK:
            if Value < 0 and not STATE["allow_negative"]:
                raise Fault(faultcode="Client.Validation",
                            faultstring="Value must not be negative")
            if ReadingId in BOOKED:
                raise Fault(faultcode="Client.Duplicate",
                            faultstring="Reading %s already exists" % ReadingId)
            BOOKED[ReadingId] = 1
            ARRIVALS.setdefault(Machine, []).append(ReadingId)
            return "booked %s" % ReadingId

    # Measurements: like RecordReading (duplicate ReadingId refused), with every
    # field kept so a test can check what arrived.
    @rpc(Unicode(**Req), Unicode(**Req), Unicode, Decimal(**Req), Unicode(**Req),
         DateTime(**Req), Unicode, Unicode, Unicode, _returns=Unicode)
    def RecordMeasurement(ctx, ReadingId, Sensor, Machine, Value, Unit, Timestamp,
                          WorkCenter, Shift, OrderNo):
        with LOCK:
            CALLS["RecordMeasurement"] += 1
        if Machine == "slow":
            time.sleep(0.5)
        with LOCK:
            if ReadingId in MEASUREMENTS:
                raise Fault(faultcode="Client.Duplicate",
                            faultstring="Measurement %s already exists" % ReadingId)
            MEASUREMENTS[ReadingId] = _measurement_fields(
                ReadingId, Sensor, Machine, Value, Unit, Timestamp,
                WorkCenter, Shift, OrderNo)
            return "booked %s" % ReadingId

    # A batch: duplicates (already booked, or repeated within the batch) are
    # skipped and counted, never a fault.
    @rpc(Array(Measurement), _returns=Unicode)
    def RecordMeasurements(ctx, Measurements):
        items = list(Measurements or [])
        with LOCK:
            CALLS["RecordMeasurements"] += 1
        if any(m.Machine == "slow" for m in items):
            time.sleep(0.5)
        booked = duplicates = 0
        with LOCK:
            for m in items:
                if m.ReadingId in MEASUREMENTS:
                    duplicates += 1
                    continue
                MEASUREMENTS[m.ReadingId] = _measurement_fields(
                    m.ReadingId, m.Sensor, m.Machine, m.Value, m.Unit, m.Timestamp,
                    m.WorkCenter, m.Shift, m.OrderNo)
                booked += 1
            MSTATE["duplicates"] += duplicates
        return "booked %d, duplicates %d" % (booked, duplicates)

    @rpc(_returns=Unicode)
    def MeasurementStats(ctx):
        # JSON text: {"booked": n, "measurements": {id: {fields}},
        #             "calls": {operation: n}, "duplicates": n}
        with LOCK:
            return json.dumps({"booked": len(MEASUREMENTS),
                               "measurements": MEASUREMENTS,
                               "calls": CALLS,
                               "duplicates": MSTATE["duplicates"]})

    @rpc(Unicode(**Req), _returns=Unicode)
    def CurrentOrder(ctx, Machine):
        with LOCK:
            CALLS["CurrentOrder"] += 1
        order = ORDERS.get(Machine)
        if order is None:
            raise Fault(faultcode="Client.NotFound",
                        faultstring="No released order on machine %s" % Machine)
        return order

    @rpc(Decimal, _returns=Unicode)
    def Sleep(ctx, Seconds):
        time.sleep(float(Seconds))
        return "slept"

    @rpc(_returns=Unicode)
    def ReadingStats(ctx):
        # JSON text: {"booked": n, "arrivals": {machine: [ids in order]}}
        with LOCK:
            return json.dumps({"booked": len(BOOKED), "arrivals": ARRIVALS})

    @rpc(Boolean, _returns=Boolean)
    def AllowNegative(ctx, Allow):
        with LOCK:
            STATE["allow_negative"] = bool(Allow)
            return STATE["allow_negative"]

    @rpc(_returns=Unicode)
    def Crash(ctx):
        # Deliberately not a Fault: spyne must map it to a generic Server fault.
        raise RuntimeError("boom")


application = Application(
    [PlantService], tns=TNS, name="PlantService",
    in_protocol=Soap11(validator="lxml"), out_protocol=Soap11(),
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port

    return serving.serve(application, port)


if __name__ == "__main__":
    sys.exit(main())
