#!/usr/bin/env python3
"""xray_readback: wait until segments sent by xray_emit.py can be read back through the X-Ray API.

Owns: nothing but its boto3 client. Talks to: an X-Ray endpoint (the stub, moto_front.py) with
BatchGetTraces, signed with the test credentials. Never: writes anything to the endpoint.

Reads the JSON lines xray_emit.py printed (--sent FILE, or stdin), polls BatchGetTraces until
every sent segment id is there or --timeout seconds passed, then prints a summary: per trace,
the segment name, its number of subsegments, its annotations, and whether the document read
back is the one that was sent (same JSON text, or same JSON value). Exit status 0 when every
segment landed, 1 otherwise.

Usage: xray_readback.py --endpoint http://127.0.0.1:PORT [--sent FILE] [--timeout 20]
           [--region us-east-1]
"""
import argparse
import json
import sys
import time

import boto3


def parse_args():
    ap = argparse.ArgumentParser(description="read segments back through BatchGetTraces")
    ap.add_argument("--endpoint", required=True, help="X-Ray endpoint URL")
    ap.add_argument("--sent", help="xray_emit.py output (default: stdin)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait (default 20)")
    ap.add_argument("--region", default="us-east-1")
    return ap.parse_args()


def read_back(client, trace_ids):
    """segment id -> raw document text, for every segment of these traces."""
    found = {}
    for i in range(0, len(trace_ids), 5):
        kwargs = {"TraceIds": trace_ids[i : i + 5]}
        while True:
            out = client.batch_get_traces(**kwargs)
            for trace in out.get("Traces", []):
                for seg in trace.get("Segments", []):
                    found[seg["Id"]] = seg["Document"]
            token = out.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
    return found


def main():
    a = parse_args()
    src = open(a.sent) if a.sent else sys.stdin
    sent = [json.loads(line) for line in src if line.strip()]
    if not sent:
        print("xray_readback: nothing was sent", file=sys.stderr)
        return 1
    client = boto3.client(
        "xray",
        endpoint_url=a.endpoint,
        region_name=a.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    trace_ids = list(dict.fromkeys(s["trace_id"] for s in sent))
    deadline = time.monotonic() + a.timeout
    started = time.monotonic()
    while True:
        found = read_back(client, trace_ids)
        missing = [s for s in sent if s["id"] not in found]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    waited = time.monotonic() - started

    print(f"{len(sent) - len(missing)}/{len(sent)} segments landed in X-Ray after {waited:.1f} s")
    for s in sent:
        raw = found.get(s["id"])
        if raw is None:
            print(f"  {s['trace_id']}  {s['name']:<12} MISSING")
            continue
        doc = json.loads(raw)
        if raw == s.get("raw"):
            same = "identical text"
        elif doc == s["document"]:
            same = "same JSON, different text"
        else:
            same = "DIFFERENT document"
        annotations = ", ".join(f"{k}={v!r}" for k, v in (doc.get("annotations") or {}).items())
        print(
            f"  {s['trace_id']}  {doc.get('name', '?'):<12} "
            f"subsegments={len(doc.get('subsegments') or [])}  annotations: {annotations}  [{same}]"
        )
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
