#!/usr/bin/env python3
"""xray_emit: record traces with the real AWS X-Ray SDK for Python and send them to a daemon.

Owns: one run of the `aws-xray-sdk` recorder. Talks to: the daemon (cloudtail under test) over
UDP, at AWS_XRAY_DAEMON_ADDRESS or --daemon-address. Never: asks the daemon for sampling rules
(sampling is off, so every segment is sent), or opens any other socket.

Each of --count segments gets --subsegments direct child subsegments (the first in the `remote`
namespace, the others `local`), each with an annotation, metadata and an HTTP status; the segment
itself gets HTTP metadata, annotations of each JSON type (string, number, bool) and metadata.
Ending a segment makes the SDK's UDPEmitter send it as one datagram
`{"format":"json","version":1}\\n<document>` (subsegments inside it: well under the SDK's
streaming threshold).

For each segment, one JSON line goes to stdout once it was sent:
    {"trace_id": "1-...", "id": "<16 hex>", "name": "...", "bytes": <datagram size>,
     "document": <the segment as the SDK serialized it onto the wire>,
     "raw": "<that document's exact JSON text>"}
so a test can compare what X-Ray gives back with what was sent (moto returns the text the
daemon put byte for byte: an agent that forwards documents untouched gives back `raw`).
Exit status 0 when every segment was handed to the socket, 1 otherwise (the SDK logs and
swallows send errors).

Usage: AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:2000 xray_emit.py [--count 3] [--subsegments 2]
           [--name xray-emit] [--pad-bytes 0] [--interval-ms 0]
"""
import argparse
import json
import logging
import os
import sys
import time

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.emitters.udp_emitter import PROTOCOL_DELIMITER, PROTOCOL_HEADER, UDPEmitter


class CapturingEmitter(UDPEmitter):
    """The SDK's own UDP emitter, keeping a copy of each datagram it hands to the socket."""

    def __init__(self, daemon_address):
        super().__init__(daemon_address)
        self.sent = []
        self.failed = 0

    def _send_data(self, data):
        try:
            super()._send_data(data)
        except Exception:
            self.failed += 1
            raise
        self.sent.append(data)


def parse_args():
    ap = argparse.ArgumentParser(description="send segments to an X-Ray daemon with aws-xray-sdk")
    ap.add_argument("--count", type=int, default=3, help="segments to record (default 3)")
    ap.add_argument("--subsegments", type=int, default=2, help="subsegments per segment (default 2)")
    ap.add_argument("--name", default="xray-emit", help="segment (service) name")
    ap.add_argument(
        "--pad-bytes",
        type=int,
        default=0,
        help="add a metadata string of this many bytes to each segment (large-datagram tests)",
    )
    ap.add_argument("--interval-ms", type=int, default=0, help="pause between segments")
    ap.add_argument(
        "--daemon-address",
        default=os.environ.get("AWS_XRAY_DAEMON_ADDRESS"),
        help="host:port of the daemon (default: AWS_XRAY_DAEMON_ADDRESS)",
    )
    a = ap.parse_args()
    if not a.daemon_address:
        ap.error("set AWS_XRAY_DAEMON_ADDRESS or --daemon-address")
    return a


def record_one(i, a):
    segment = xray_recorder.begin_segment(a.name)
    segment.put_http_meta("method", "GET")
    segment.put_http_meta("url", f"http://localhost/orders?id={i}")
    xray_recorder.put_annotation("customer_id", f"c-{i}")
    xray_recorder.put_annotation("index", i)
    xray_recorder.put_annotation("cached", i % 2 == 0)
    xray_recorder.put_metadata("request", {"path": "/orders", "items": [1, 2, 3], "index": i}, "debug")
    if a.pad_bytes:
        xray_recorder.put_metadata("padding", "x" * a.pad_bytes, "bulk")
    for j in range(a.subsegments):
        sub = xray_recorder.begin_subsegment(f"step-{j}", "remote" if j == 0 else "local")
        xray_recorder.put_annotation("step", j)
        xray_recorder.put_metadata("detail", {"step": j, "note": f"subsegment {j} of segment {i}"})
        sub.put_http_meta("status", 200)
        time.sleep(0.001)
        xray_recorder.end_subsegment()
    segment.put_http_meta("status", 200)
    xray_recorder.end_segment()
    return segment


def main():
    a = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emitter = CapturingEmitter(a.daemon_address)
    xray_recorder.configure(
        sampling=False,
        context_missing="LOG_ERROR",
        daemon_address=a.daemon_address,
        emitter=emitter,
        plugins=[],
        service=a.name,
    )
    prefix = PROTOCOL_HEADER + PROTOCOL_DELIMITER
    ok = True
    for i in range(a.count):
        before = len(emitter.sent)
        segment = record_one(i, a)
        if len(emitter.sent) != before + 1:
            print(f"xray_emit: segment {segment.id} was not sent", file=sys.stderr)
            ok = False
            continue
        datagram = emitter.sent[-1]
        assert datagram.startswith(prefix), datagram[:80]
        raw = datagram[len(prefix):]
        document = json.loads(raw)
        line = {
            "trace_id": segment.trace_id,
            "id": segment.id,
            "name": segment.name,
            "bytes": len(datagram.encode()),
            "document": document,
            "raw": raw,
        }
        print(json.dumps(line), flush=True)
        if a.interval_ms:
            time.sleep(a.interval_ms / 1000)
    sys.exit(0 if ok and not emitter.failed else 1)


if __name__ == "__main__":
    main()
