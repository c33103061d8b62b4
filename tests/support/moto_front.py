#!/usr/bin/env python3
"""moto_front: the stub AWS endpoint of cloudtail's integration tests.

Owns: one HTTP server on 127.0.0.1 that runs moto's own WSGI app (moto in server mode) behind a
middleware. Talks to: the agent under test and the tests' AWS SDK clients. Never: binds a
non-loopback address, or reaches the network.

What the middleware adds to moto (5.x):
  * CloudWatch over Smithy RPC v2 CBOR. The Rust `aws-sdk-cloudwatch` (and botocore >= 1.40) call
    `POST /service/GraniteServiceVersion20100801/operation/<Op>` with a CBOR body; moto only knows
    the JSON 1.0 / query protocols. Such requests are rewritten to JSON 1.0
    (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`) and moto's reply is turned back into CBOR,
    typed by botocore's service model (timestamps become CBOR tag 1, blobs bytes, doubles floats).
    Gzip request bodies (`Content-Encoding: gzip`, any service) are inflated first. Errors go back
    as CBOR `{"__type", "message"}`.
  * X-Ray `POST /GetSamplingRules` and `POST /SamplingTargets` (moto lacks them), answered with a
    "Default" rule, but only for requests that carry a well-formed SigV4 `Authorization` header for
    the `xray` service and a matching `X-Amz-Date`; when the access key is known (`--credentials`,
    default `testing:testing`) the signature itself is recomputed and checked. Anything else gets
    403 with a JSON message that says what is wrong. This is how tests prove the agent's sampling
    proxy signs what it forwards.
  * X-Ray `POST /TraceSummaries`: moto answers `"Users": {}`, which the Rust SDK cannot parse; it
    is rewritten to `[]`.
  * A journal of every AWS request (`GET /_front/requests`), cleared by `POST /_front/reset`, which
    also resets moto (`/moto-api/reset`) and the faults.
  * Fault injection (`POST /_front/faults`), see `Faults`.

Control API (never journaled, never faulted; neither is moto's own `/moto-api/`):
  GET  /_front/requests   JSON list, oldest first, of
         {"seq", "time", "method", "path", "query", "protocol", "target", "operation",
          "key" (the SigV4 access key, or null),
          "headers": {"Authorization", "X-Amzn-Xray-Timestamp", "x-amzn-logs-format",
                      "Content-Encoding", "Content-Type"} (only those present),
          "body_bytes", "body" (JSON-decoded request body, CBOR and gzip undone; null when not
          JSON or larger than --record-body-limit), "status", "fault" (null, "status:503",
          "throttle", "down:close", "down:503")}
       `protocol` is one of rest-json, json-1.0, json-1.1, rpcv2-cbor, query, unknown;
       `operation` is the API name (PutTraceSegments, PutLogEvents, PutMetricData, ...).
  POST /_front/reset      clear the journal and the faults, reset moto.
  POST /_front/faults     add a fault rule, JSON object (optional "operation": name or list of
                          names, "path": exact path, restrict which requests it hits):
         {"status": 503, "count": N}  the next N AWS requests answer that status, empty body;
         {"throttle": N}              the next N answer the protocol's throttling error:
                                      X-Ray (rest-json) 429 ThrottledException "Rate exceeded",
                                      JSON 1.0/1.1 (CloudWatch Logs) 400 ThrottlingException,
                                      CBOR (CloudWatch) 400 ThrottlingException (query error
                                      header Throttling;Sender);
         {"down": true, "mode": "close"|"503"}  every AWS request has its connection closed
                                      without an answer ("close", the default) or gets an empty
                                      503, until {"down": false};
         {"delay": SECONDS, "count": N}  the next N AWS requests (default: every one, until
                                      cleared) are answered normally but SECONDS late;
         {"every": K, ...}            with "status" or "throttle": only every K-th matching
                                      request takes a unit of the rule (K=2: every other call
                                      fails, the others go through);
         {"clear": true}              drop every rule and bring the service back up.
  GET  /_front/credentials?ttl=S[&valid=V]  a container credentials endpoint
                          (AWS_CONTAINER_CREDENTIALS_FULL_URI): each call hands out a new key
                          (`ASIAFRONT<n>`) whose Expiration is S seconds later (default 30). An
                          AWS request signed with such a key more than V seconds (default S: a
                          key revoked early when V < S) after it was handed out answers the
                          protocol's ExpiredTokenException (400; 403 for rest-json), journaled
                          with fault "expired". Keys it did not hand out are not checked.
  GET  /_front/credentials/issued  {"issued": N, "rejected": M}: keys handed out, requests refused.
  GET  /_front/faults     the rules left and the down state.
  POST /_front/sampling-rules  {"rules": [SamplingRule, ...]} replaces the rules GetSamplingRules
                          serves (SamplingTargets then answers with each rule's FixedRate).

Usage: moto_front.py [--host 127.0.0.1] [--port 0] [--exit-on-stdin-eof]
With --port 0 a free port is picked. Once the socket is bound, one line
`listening on 127.0.0.1:<port>` is printed on stdout (flushed); all logs go to stderr.
Needs: moto[server], cbor2 (botocore comes with moto).
"""
import argparse
import base64
import datetime as dt
import gzip
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

import cbor2
from botocore.session import get_session
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder, run_wsgi_app

# Smithy RPC v2 CBOR: POST /service/<ServiceShape>/operation/<Operation>
CBOR_PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")
# Smithy service shape name -> botocore service name, for the services moto speaks JSON 1.0 to.
CBOR_SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}

# X-Ray is REST-JSON: the operation is named by the path.
XRAY_PATHS = {
    "/TraceSegments": "PutTraceSegments",
    "/TelemetryRecords": "PutTelemetryRecords",
    "/Traces": "BatchGetTraces",
    "/TraceSummaries": "GetTraceSummaries",
    "/TraceGraph": "GetTraceGraph",
    "/ServiceGraph": "GetServiceGraph",
    "/GetSamplingRules": "GetSamplingRules",
    "/SamplingTargets": "GetSamplingTargets",
}

# Headers copied into the journal, with the spelling used there.
RECORDED_HEADERS = [
    "Authorization",
    "X-Amzn-Xray-Timestamp",
    "x-amzn-logs-format",
    "Content-Encoding",
    "Content-Type",
]

SIGV4_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 "
    r"Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9._;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
MAX_CLOCK_SKEW_SECS = 15 * 60

DEFAULT_RULE = {
    "RuleName": "Default",
    "RuleARN": "arn:aws:xray:us-east-1:123456789012:sampling-rule/Default",
    "ResourceARN": "*",
    "Priority": 10000,
    "FixedRate": 0.05,
    "ReservoirSize": 1,
    "ServiceName": "*",
    "ServiceType": "*",
    "Host": "*",
    "HTTPMethod": "*",
    "URLPath": "*",
    "Version": 1,
    "Attributes": {},
}


def log(msg):
    print(f"moto_front: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Small WSGI helpers


def read_body(environ):
    """Read the whole request body and put a fresh stream back for whoever reads next."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        raw = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked upload
        raw = stream.read()
    else:
        raw = b""
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    return raw


def set_body(environ, raw):
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))


def call_app(app, environ):
    """Run a WSGI app to completion: (status line, header list, body bytes)."""
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return captured["status"], captured["headers"], body


def reply(start_response, status, body=b"", content_type=None, headers=()):
    if isinstance(status, int):
        status = f"{status} {STATUS_TEXT.get(status, 'Status')}"
    out = [("Content-Length", str(len(body)))]
    if content_type:
        out.append(("Content-Type", content_type))
    out.extend(headers)
    start_response(status, out)
    return [body]


def reply_json(start_response, status, doc, content_type="application/json", headers=()):
    return reply(start_response, status, json.dumps(doc).encode(), content_type, headers)


STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def jsonable(o):
    """json.dumps default= for what cbor2 decodes: timestamps, blobs, unknown tags."""
    if isinstance(o, dt.datetime):
        if o.tzinfo is None:
            o = o.replace(tzinfo=dt.timezone.utc)
        return o.timestamp()
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if isinstance(o, cbor2.CBORTag):
        return o.value
    if isinstance(o, cbor2.CBORSimpleValue):
        return None
    raise TypeError(f"cannot JSON-encode {type(o).__name__}")


# ----------------------------------------------------------------------------------------------
# Request classification


class Request:
    """What the front knows about one AWS request, read before it is answered."""

    def __init__(self, environ, raw_body):
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.raw_body = raw_body
        target = environ.get("HTTP_X_AMZ_TARGET")
        content_type = environ.get("CONTENT_TYPE", "")
        cbor = CBOR_PATH.match(self.path)
        self.cbor_service = None
        if cbor:
            self.protocol = "rpcv2-cbor"
            self.cbor_service = cbor.group(1)
            self.target = f"{cbor.group(1)}.{cbor.group(2)}"
            self.operation = cbor.group(2)
        elif target:
            self.protocol = "json-1.1" if "1.1" in content_type else "json-1.0"
            self.target = target
            self.operation = target.rsplit(".", 1)[-1]
        elif self.path in XRAY_PATHS:
            self.protocol = "rest-json"
            self.target = None
            self.operation = XRAY_PATHS[self.path]
        elif "x-www-form-urlencoded" in content_type:
            self.protocol = "query"
            self.target = None
            self.operation = None  # filled from the body below
        else:
            self.protocol = "unknown"
            self.target = None
            self.operation = None
        self.headers = {}
        for name in RECORDED_HEADERS:
            value = header(environ, name)
            if value is not None:
                self.headers[name] = value
        self.body = None  # decoded later, once gzip and CBOR are undone

    def access_key(self):
        """The access key of the SigV4 Authorization header, or None."""
        m = SIGV4_AUTH.match((self.headers.get("Authorization") or "").strip())
        return m["key"] if m else None

    def decode_body(self, plain, limit):
        """Keep a JSON view of the (inflated) body for the journal, if small enough."""
        if not plain or len(plain) > limit:
            return
        try:
            if self.protocol == "rpcv2-cbor":
                self.body = json.loads(json.dumps(cbor2.loads(plain), default=jsonable))
            elif self.protocol == "query":
                form = dict(urllib.parse.parse_qsl(plain.decode(), keep_blank_values=True))
                self.body = form
                self.operation = form.get("Action")
            else:
                self.body = json.loads(plain)
        except Exception:  # not JSON: the journal keeps only its size
            self.body = None


def header(environ, name):
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ.get(key) or None
    return environ.get("HTTP_" + key)


# ----------------------------------------------------------------------------------------------
# Journal and faults


class Journal:
    def __init__(self, body_limit):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0
        self.body_limit = body_limit

    def add(self, req):
        with self.lock:
            self.seq += 1
            entry = {
                "seq": self.seq,
                "time": time.time(),
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "protocol": req.protocol,
                "target": req.target,
                "operation": req.operation,
                "headers": dict(req.headers),
                "body_bytes": len(req.raw_body),
                "body": req.body,
                "key": req.access_key(),
                "status": None,
                "fault": None,
            }
            self.entries.append(entry)
            return entry

    def snapshot(self):
        with self.lock:
            return json.dumps(self.entries).encode()

    def clear(self):
        with self.lock:
            self.entries = []
            self.seq = 0


class Faults:
    """Rules that make the next AWS requests fail, in the order they were added.

    A rule is {"kind": "status"|"throttle", "status": int, "left": int, "operation": set|None,
    "path": str|None}. A request takes one unit from the first rule that matches it. `down`
    overrides the rules while set.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.down = None  # None, "close" or "503"

    def configure(self, doc):
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        with self.lock:
            if doc.get("clear"):
                self.rules, self.down = [], None
                return
            if "down" in doc:
                if doc["down"]:
                    mode = doc.get("mode", "close")
                    if mode not in ("close", "503"):
                        raise ValueError('"mode" must be "close" or "503"')
                    self.down = mode
                else:
                    self.down = None
                return
            ops = doc.get("operation")
            if isinstance(ops, str):
                ops = {ops}
            elif ops is not None:
                ops = set(ops)
            if "delay" in doc:
                left = int(doc["count"]) if "count" in doc else float("inf")
                rule = {"kind": "delay", "status": float(doc["delay"]), "left": left}
            elif "throttle" in doc:
                rule = {"kind": "throttle", "status": None, "left": int(doc["throttle"])}
            elif "status" in doc:
                rule = {"kind": "status", "status": int(doc["status"]), "left": int(doc.get("count", 1))}
            else:
                raise ValueError('expected one of "status", "throttle", "down", "clear"')
            if rule["left"] < 0:
                raise ValueError("count must be >= 0")
            rule["every"] = int(doc.get("every", 1))
            if rule["every"] < 1:
                raise ValueError('"every" must be >= 1')
            rule["seen"] = 0
            rule["operation"] = ops
            rule["path"] = doc.get("path")
            self.rules.append(rule)

    def take(self, req):
        """The fault this request gets, or None: ("down", mode) or (kind, status)."""
        with self.lock:
            if self.down:
                return ("down", self.down)
            for rule in self.rules:
                if rule["left"] <= 0:
                    continue
                if rule["operation"] is not None and req.operation not in rule["operation"]:
                    continue
                if rule["path"] is not None and req.path != rule["path"]:
                    continue
                rule["seen"] += 1
                if rule["seen"] % rule["every"] != 0:
                    continue
                rule["left"] -= 1
                return (rule["kind"], rule["status"])
            self.rules = [r for r in self.rules if r["left"] > 0]
            return None

    def snapshot(self):
        with self.lock:
            rules = [dict(r, operation=sorted(r["operation"]) if r["operation"] else None) for r in self.rules]
            for r in rules:
                if r["left"] == float("inf"):
                    r["left"] = -1  # JSON has no infinity: -1 means "until cleared"
            return {"down": self.down, "rules": [r for r in rules if r["left"] != 0]}

    def clear(self):
        with self.lock:
            self.rules, self.down = [], None


class IssuedKeys:
    """Short-lived keys handed out by the container credentials route, and their expirations."""

    def __init__(self):
        self.lock = threading.Lock()
        self.expiry = {}
        self.rejected = 0

    def issue(self, ttl, valid):
        """A new key announced to expire in `ttl` s, refused after `valid` s (revoked early)."""
        with self.lock:
            key = f"ASIAFRONT{len(self.expiry) + 1:08d}"
            now = time.time()
            expires = now + ttl
            self.expiry[key] = now + min(valid, ttl)
        stamp = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        log(f"issued {key}, expires {stamp}")
        return {
            "AccessKeyId": key,
            "SecretAccessKey": f"secret-{key}",
            "Token": f"token-{key}",
            "Expiration": stamp,
        }

    def expired(self, key):
        """True when `key` was handed out here and its expiration passed (counted)."""
        with self.lock:
            expires = self.expiry.get(key)
            if expires is None or time.time() < expires:
                return False
            self.rejected += 1
            return True

    def snapshot(self):
        with self.lock:
            return {"issued": len(self.expiry), "rejected": self.rejected}

    def clear(self):
        with self.lock:
            self.expiry, self.rejected = {}, 0


# ----------------------------------------------------------------------------------------------
# SigV4 checks for the sampling endpoints


class SigV4Error(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def uri_encode(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def canonical_request(environ, signed_headers, raw_body):
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    raw_path = raw_uri.split("?", 1)[0] or "/"
    # Non-S3 services encode the path as sent once more ("double encoding").
    path = "/".join(uri_encode(seg) for seg in raw_path.split("/"))
    pairs = urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(pairs))
    lines = []
    for name in signed_headers:
        value = header(environ, name)
        if value is None:
            raise SigV4Error(
                "IncompleteSignatureException",
                f"SignedHeaders lists '{name}' but the request has no such header.",
            )
        lines.append(f"{name}:{' '.join(value.strip().split())}\n")
    payload_hash = header(environ, "x-amz-content-sha256")
    if not payload_hash or payload_hash.startswith("UNSIGNED") or payload_hash.startswith("STREAMING"):
        payload_hash = hashlib.sha256(raw_body).hexdigest()
    return "\n".join(
        [environ.get("REQUEST_METHOD", ""), path, query, "".join(lines), ";".join(signed_headers), payload_hash]
    )


def check_sigv4(environ, raw_body, secrets, service="xray"):
    """Raise SigV4Error unless the request is SigV4-signed for `service`; return the region."""
    auth = header(environ, "Authorization")
    if not auth:
        raise SigV4Error(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token: the request has no Authorization header (it was not SigV4-signed).",
        )
    m = SIGV4_AUTH.match(auth.strip())
    if not m:
        raise SigV4Error(
            "IncompleteSignatureException",
            "Authorization header is not of the form 'AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/<region>/"
            f"<service>/aws4_request, SignedHeaders=<a;b;c>, Signature=<64 hex>': got {auth[:200]!r}.",
        )
    if m["service"] != service:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to the correct service: '{service}', got '{m['service']}'.",
        )
    signed = m["signed"].split(";")
    for needed in ("host", "x-amz-date"):
        if needed not in signed:
            raise SigV4Error(
                "IncompleteSignatureException",
                f"SignedHeaders must include '{needed}': got '{m['signed']}'.",
            )
    if signed != sorted(signed):
        raise SigV4Error("IncompleteSignatureException", f"SignedHeaders must be sorted: got '{m['signed']}'.")
    amz_date = header(environ, "X-Amz-Date")
    if not amz_date:
        raise SigV4Error("IncompleteSignatureException", "The request has no X-Amz-Date header.")
    if not AMZ_DATE.match(amz_date):
        raise SigV4Error(
            "IncompleteSignatureException",
            f"X-Amz-Date must look like 20240101T000000Z: got {amz_date!r}.",
        )
    if amz_date[:8] != m["date"]:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential date {m['date']} does not match X-Amz-Date {amz_date}.",
        )
    signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    skew = abs(time.time() - signed_at.timestamp())
    if skew > MAX_CLOCK_SKEW_SECS:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Signature expired: X-Amz-Date {amz_date} is {int(skew)} s away from the server's clock.",
        )
    secret = secrets.get(m["key"])
    if secret is not None:
        creq = canonical_request(environ, signed, raw_body)
        scope = f"{m['date']}/{m['region']}/{m['service']}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (m["date"], m["region"], m["service"], "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, m["signature"]):
            raise SigV4Error(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                f"The Canonical String for this request should have been {creq!r}; "
                f"the String-to-Sign should have been {to_sign!r}.",
            )
    return m["region"]


# ----------------------------------------------------------------------------------------------
# CBOR <-> JSON 1.0 for moto

_models = {}
_models_lock = threading.Lock()


def service_model(name):
    with _models_lock:
        if name not in _models:
            _models[name] = get_session().get_service_model(name)
        return _models[name]


def retag(value, shape):
    """A JSON value as moto produced it -> a CBOR-ready value typed by the botocore shape."""
    if value is None or shape is None:
        return value
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            return value
        return {k: retag(v, shape.members.get(k)) for k, v in value.items()}
    if t == "list":
        return [retag(v, shape.member) for v in value]
    if t == "map":
        return {k: retag(v, shape.value) for k, v in value.items()}
    if t == "timestamp":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=dt.timezone.utc)
                value = parsed.timestamp()
        return cbor2.CBORTag(1, float(value))
    if t == "blob" and isinstance(value, str):
        return base64.b64decode(value)
    if t in ("double", "float") and isinstance(value, (int, str)) and not isinstance(value, bool):
        return float(value)
    if t in ("integer", "long") and isinstance(value, str):
        return int(value)
    return value


def cbor_error_type(moto_type):
    """moto's JSON error code (maybe 'ns#Name' or 'Name:extra') -> bare shape name."""
    code = moto_type or "InternalFailure"
    code = code.split(":", 1)[0]
    return code.rsplit("#", 1)[-1]


# ----------------------------------------------------------------------------------------------
# The middleware


class Front:
    def __init__(self, app, secrets, body_limit):
        self.app = app
        self.secrets = secrets
        self.journal = Journal(body_limit)
        self.faults = Faults()
        self.rules_lock = threading.Lock()
        self.sampling_rules = [dict(DEFAULT_RULE)]
        self.keys = IssuedKeys()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_front/"):
            return self.control(environ, start_response)
        if path.startswith("/moto-api") or path == "/favicon.ico":
            return self.app(environ, start_response)
        return self.aws(environ, start_response)

    # -- control API ---------------------------------------------------------------------------

    def control(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        try:
            if method == "GET" and path == "/_front/requests":
                return reply(start_response, 200, self.journal.snapshot(), "application/json")
            if method == "POST" and path == "/_front/reset":
                self.journal.clear()
                self.faults.clear()
                self.keys.clear()
                with self.rules_lock:
                    self.sampling_rules = [dict(DEFAULT_RULE)]
                status, _, body = call_app(self.app, EnvironBuilder(path="/moto-api/reset", method="POST").get_environ())
                if not status.startswith("200"):
                    return reply_json(start_response, 500, {"message": f"moto reset failed: {status} {body[:200]!r}"})
                return reply_json(start_response, 200, {"reset": True})
            if method == "GET" and path == "/_front/credentials":
                query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
                ttl = float(query.get("ttl", 30))
                return reply_json(start_response, 200, self.keys.issue(ttl, float(query.get("valid", ttl))))
            if method == "GET" and path == "/_front/credentials/issued":
                return reply_json(start_response, 200, self.keys.snapshot())
            if method == "GET" and path == "/_front/faults":
                return reply_json(start_response, 200, self.faults.snapshot())
            if method == "POST" and path == "/_front/faults":
                self.faults.configure(json.loads(read_body(environ) or b"null"))
                return reply_json(start_response, 200, self.faults.snapshot())
            if method == "POST" and path == "/_front/sampling-rules":
                rules = json.loads(read_body(environ))["rules"]
                with self.rules_lock:
                    self.sampling_rules = [dict(DEFAULT_RULE, **r) for r in rules]
                return reply_json(start_response, 200, {"rules": len(rules)})
        except (ValueError, KeyError, TypeError) as err:
            return reply_json(start_response, 400, {"message": f"bad control request: {err}"})
        return reply_json(start_response, 404, {"message": f"no control endpoint {method} {path}"})

    # -- AWS requests ----------------------------------------------------------------------------

    def aws(self, environ, start_response):
        raw = read_body(environ)
        req = Request(environ, raw)
        plain = raw
        if (header(environ, "Content-Encoding") or "").lower() == "gzip":
            try:
                plain = gzip.decompress(raw)
            except OSError as err:
                entry = self.journal.add(req)
                entry["status"] = 400
                return self.error(req, start_response, 400, "SerializationException", f"bad gzip body: {err}")
            environ.pop("HTTP_CONTENT_ENCODING", None)
            set_body(environ, plain)
        req.decode_body(plain, self.journal.body_limit)
        entry = self.journal.add(req)

        def recording_start_response(status, headers, exc_info=None):
            entry["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        if self.keys.expired(req.access_key()):
            entry["fault"] = "expired"
            status = 403 if req.protocol == "rest-json" else 400
            return self.error(
                req, recording_start_response, status, "ExpiredTokenException", "The security token included in the request is expired"
            )
        fault = self.faults.take(req)
        if fault is not None and fault[0] == "delay":
            entry["fault"] = f"delay:{fault[1]}"
            time.sleep(fault[1])
            fault = None
        if fault is not None:
            entry["fault"] = fault[0] if fault[1] is None else f"{fault[0]}:{fault[1]}"
            return self.inject(environ, req, fault, recording_start_response)
        if req.method == "POST" and req.path in ("/GetSamplingRules", "/SamplingTargets"):
            return self.sampling(environ, req, raw, plain, recording_start_response)
        if req.method == "POST" and req.path == "/TraceSummaries":
            return self.trace_summaries(environ, recording_start_response)
        if req.protocol == "rpcv2-cbor":
            return self.cbor(environ, req, plain, recording_start_response)
        return self.app(environ, recording_start_response)

    def error(self, req, start_response, status, error_type, message, extra_headers=()):
        """An AWS error in the request's own protocol."""
        doc = {"__type": error_type, "message": message}
        if req.protocol == "rpcv2-cbor":
            return reply(
                start_response,
                status,
                cbor2.dumps(doc),
                "application/cbor",
                [("smithy-protocol", "rpc-v2-cbor"), *extra_headers],
            )
        if req.protocol in ("json-1.0", "json-1.1"):
            ct = "application/x-amz-json-1.1" if req.protocol == "json-1.1" else "application/x-amz-json-1.0"
            return reply_json(start_response, status, doc, ct, extra_headers)
        return reply_json(start_response, status, doc, "application/json", [("x-amzn-ErrorType", error_type), *extra_headers])

    def inject(self, environ, req, fault, start_response):
        kind, arg = fault
        if kind == "down":
            if arg == "close":
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            return reply(start_response, 503)
        if kind == "status":
            return reply(start_response, arg)
        # throttle
        if req.protocol == "rest-json":
            return self.error(req, start_response, 429, "ThrottledException", "Rate exceeded")
        if req.protocol == "rpcv2-cbor":
            return self.error(
                req, start_response, 400, "ThrottlingException", "Rate exceeded", [("x-amzn-query-error", "Throttling;Sender")]
            )
        return self.error(req, start_response, 400, "ThrottlingException", "Rate exceeded")

    def sampling(self, environ, req, raw, plain, start_response):
        try:
            region = check_sigv4(environ, raw, self.secrets)
        except SigV4Error as err:
            log(f"{req.path}: 403 {err.error_type}: {err.message}")
            return self.error(req, start_response, 403, err.error_type, err.message)
        with self.rules_lock:
            rules = [dict(r) for r in self.sampling_rules]
        for r in rules:
            r["RuleARN"] = r["RuleARN"].replace(":us-east-1:", f":{region}:")
        if req.path == "/GetSamplingRules":
            doc = {"SamplingRuleRecords": [{"SamplingRule": r, "CreatedAt": 0.0, "ModifiedAt": 0.0} for r in rules]}
            return reply_json(start_response, 200, doc)
        try:
            stats = json.loads(plain or b"{}").get("SamplingStatisticsDocuments", [])
        except ValueError:
            return self.error(req, start_response, 400, "InvalidRequestException", "body is not JSON")
        by_name = {r["RuleName"]: r for r in rules}
        now = time.time()
        targets, unprocessed = [], []
        for s in stats:
            rule = by_name.get(s.get("RuleName"))
            if rule is None:
                unprocessed.append({"RuleName": s.get("RuleName"), "ErrorCode": "400", "Message": "Unknown rule"})
                continue
            targets.append(
                {
                    "RuleName": rule["RuleName"],
                    "FixedRate": rule["FixedRate"],
                    "ReservoirQuota": rule["ReservoirSize"],
                    "ReservoirQuotaTTL": now + 10,
                    "Interval": 10,
                }
            )
        doc = {"SamplingTargetDocuments": targets, "LastRuleModification": 0.0, "UnprocessedStatistics": unprocessed}
        return reply_json(start_response, 200, doc)

    def trace_summaries(self, environ, start_response):
        status, headers, body = call_app(self.app, environ)
        if status.startswith("200"):
            doc = json.loads(body)
            for summary in doc.get("TraceSummaries", []):
                if isinstance(summary.get("Users"), dict):
                    summary["Users"] = []
                # moto's misspelling of IsPartial
                if "IsParital" in summary:
                    summary["IsPartial"] = summary.pop("IsParital")
            return reply_json(start_response, status, doc)
        start_response(status, headers)
        return [body]

    def cbor(self, environ, req, plain, start_response):
        svc = CBOR_SERVICES.get(req.cbor_service)
        if svc is None:
            return self.error(req, start_response, 404, "UnknownOperationException", f"no CBOR service {req.cbor_service}")
        try:
            params = cbor2.loads(plain) if plain else {}
            body = json.dumps(params, default=jsonable).encode()
        except Exception as err:
            return self.error(req, start_response, 400, "SerializationException", f"bad CBOR body: {err}")
        environ.update(
            {
                "PATH_INFO": "/",
                "RAW_URI": "/",
                "REQUEST_URI": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "HTTP_X_AMZ_TARGET": req.target,
            }
        )
        environ.pop("HTTP_SMITHY_PROTOCOL", None)
        set_body(environ, body)
        status, headers, out = call_app(self.app, environ)
        code = int(status.split()[0])
        try:
            doc = json.loads(out) if out.strip() else {}
        except ValueError:
            doc = {"__type": "InternalFailure", "message": out[:500].decode(errors="replace")}
        if code < 300:
            shape = service_model(svc).operation_model(req.operation).output_shape
            doc = retag(doc, shape) if shape is not None else {}
        else:
            doc = {"__type": cbor_error_type(doc.get("__type")), "message": doc.get("message") or doc.get("Message") or ""}
        payload = cbor2.dumps(doc)
        keep = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length", "content-encoding")]
        start_response(
            status,
            keep + [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), ("Content-Length", str(len(payload)))],
        )
        return [payload]


# ----------------------------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    ap.add_argument(
        "--credentials",
        action="append",
        default=None,
        metavar="KEY:SECRET",
        help="access keys whose SigV4 signatures are verified on the sampling endpoints "
        "(default testing:testing); other keys get format checks only",
    )
    ap.add_argument(
        "--record-body-limit",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="journal request bodies up to this size (default 1 MiB; 0 = never)",
    )
    ap.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (the parent died or let go); for test harnesses",
    )
    ap.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    a = ap.parse_args()
    host = "127.0.0.1" if a.host == "localhost" else a.host
    try:
        if not ipaddress.ip_address(host).is_loopback:
            ap.error(f"--host {a.host}: only loopback addresses are allowed")
    except ValueError:
        ap.error(f"--host {a.host}: not an IP address")
    a.host = host
    secrets = {}
    for cred in a.credentials or ["testing:testing"]:
        key, sep, secret = cred.partition(":")
        if not sep:
            ap.error(f"--credentials {cred}: expected KEY:SECRET")
        secrets[key] = secret
    a.secrets = secrets
    return a


def main():
    a = parse_args()
    front = Front(DomainDispatcherApplication(create_backend_app), a.secrets, a.record_body_limit)

    handler = MotoRequestHandler
    if a.quiet:

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args, **kwargs):
                pass

        handler = QuietHandler

    server = make_server(a.host, a.port, front, threaded=True, request_handler=handler)
    host, port = server.socket.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    log(f"serving moto on http://{host}:{port}")

    if a.exit_on_stdin_eof:

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            log("stdin closed, exiting")
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()

    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
