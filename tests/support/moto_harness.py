#!/usr/bin/env python3
"""Test harness around moto's server, the AWS emulator the integration tests talk to.

`serve` runs moto on 127.0.0.1 behind a small WSGI layer that
  * speaks CloudWatch's Smithy RPC v2 CBOR protocol, which the current AWS SDK uses and moto
    does not: CBOR requests are decoded, checked against PutMetricData's limits (moto does not
    enforce them) and forwarded to moto as the JSON 1.0 protocol it understands; answers are
    encoded back to CBOR;
  * counts the operations it sees (GET /_harness/calls);
  * lists the metric datums moto stored, with their own timestamps, statistic sets with their
    numbers (GET /_harness/metrics);
  * reports a shorter id token lifetime from InitiateAuth on request
    (GET /_harness/token-lifetime?seconds=125), so token renewal can be tested in minutes;
  * checks PutLogEvents against CloudWatch Logs' limits (moto does not enforce them: event
    count, batch and event size, empty messages, chronological order, 24 h span) and answers
    InvalidParameterException without reaching moto; lists what it rejected
    (GET /_harness/violations) and summaries of what it passed on, with the
    `x-amzn-logs-format` header when one was sent (GET /_harness/put-log-events, ?summary=1 adds
    the largest event count and batch size seen);
  * lists the log events moto stored, per group and stream, in the order received
    (GET /_harness/log-events, ?group= and ?stream= to limit), and the groups with their
    retention, streams and the class asked for at creation (GET /_harness/log-groups);
  * fails the next N calls of an operation on request, as throttling or a server error would,
    for CBOR and JSON protocol operations alike
    (GET /_harness/fail?op=PutMetricData&times=2&status=400&code=ThrottlingException);
  * answers AccessDeniedException to PutLogEvents, CreateLogGroup, CreateLogStream and
    PutRetentionPolicy on log groups matching glob patterns, as a role's policy would
    (GET /_harness/deny-log-groups?pattern=denied-*,other; no pattern ends it);
  * refuses PutMetricData requests that hold a datum of a given name as invalid, as CloudWatch
    refuses a datum for a reason the publisher cannot know beforehand
    (GET /_harness/refuse-metric?name=Bad; no name ends it);
  * delays every following call of an operation, as a slow service would
    (GET /_harness/delay?op=PutLogEvents&seconds=2.5; seconds=0 ends it).

`cognito-setup` creates a user pool, app client, identity pool and one user, as a
provisioning run would, and prints their ids as JSON.
"""

import argparse
import base64
import datetime
import fnmatch
import gzip
import io
import json
import math
import sys
import threading
import time
import uuid
from collections import Counter
from http import HTTPStatus
from urllib.parse import parse_qs

CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
MAX_DATUMS = 1000
MAX_BODY = 1_000_000
MAX_AGE_S = 14 * 24 * 3600
MAX_AHEAD_S = 2 * 3600

MAX_LOG_EVENTS = 10_000
MAX_LOG_BATCH_BYTES = 1_048_576
LOG_EVENT_OVERHEAD = 26
MAX_LOG_EVENT_BYTES = MAX_LOG_BATCH_BYTES - LOG_EVENT_OVERHEAD
MAX_LOG_SPAN_MS = 24 * 3600 * 1000
# The operations on a log group a role's policy allows or denies by the group's name.
LOG_GROUP_OPERATIONS = {"PutLogEvents", "CreateLogGroup", "CreateLogStream", "PutRetentionPolicy"}


def to_json_value(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.timestamp()
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json_value(x) for x in v]
    return v


# CloudWatch takes values within +-2^360 and none closer to 0 than 2^-360 but 0 itself, no
# NaN and no infinity.
MAX_VALUE = 2.0**360
MIN_VALUE = 2.0**-360


def bad_value(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    v = float(v)
    return math.isnan(v) or math.isinf(v) or abs(v) > MAX_VALUE or (v != 0 and abs(v) < MIN_VALUE)


def check_put_metric_data(req, refused_names=()):
    """Returns an error message if the request breaks a limit CloudWatch enforces, or names a
    metric the test asked to be refused."""
    data = req.get("MetricData") or []
    if len(data) > MAX_DATUMS:
        return f"The collection MetricData must not have a size greater than {MAX_DATUMS} (got {len(data)})."
    now = time.time()
    for i, d in enumerate(data):
        ts = d.get("Timestamp")
        if isinstance(ts, (int, float)):
            if ts < now - MAX_AGE_S:
                return f"MetricData[{i}].Timestamp is older than two weeks."
            if ts > now + MAX_AHEAD_S:
                return f"MetricData[{i}].Timestamp is more than two hours in the future."
        if d.get("MetricName") in refused_names:
            return f"MetricData[{i}].MetricName {d.get('MetricName')} is refused by the test."
        stats = d.get("StatisticValues") or {}
        numbers = [("Value", d.get("Value"))]
        numbers += [(f"StatisticValues.{k}", stats.get(k)) for k in ("SampleCount", "Sum", "Minimum", "Maximum")]
        numbers += [(f"Values[{j}]", v) for j, v in enumerate(d.get("Values") or [])]
        numbers += [(f"Counts[{j}]", v) for j, v in enumerate(d.get("Counts") or [])]
        for name, v in numbers:
            if bad_value(v):
                return f"The value {v} for parameter MetricData.member.{i + 1}.{name} is invalid."
        if len(d.get("Dimensions") or []) > 30:
            return f"MetricData[{i}] has more than 30 dimensions."
    return None


def check_put_log_events(req):
    """Checks a PutLogEvents request against the limits CloudWatch Logs enforces.

    Returns (problems, summary): a list of dicts, one per broken rule (at its first offending
    event), each with "rule", "message" and the numbers involved; and the request's size."""
    events = req.get("logEvents")
    problems = []
    if not isinstance(events, list) or not events:
        problems.append({"rule": "min-events", "events": 0, "message": "logEvents must hold at least 1 event."})
        return problems, {"events": 0, "bytes": 0}
    if len(events) > MAX_LOG_EVENTS:
        problems.append(
            {
                "rule": "max-events",
                "events": len(events),
                "limit": MAX_LOG_EVENTS,
                "message": f"logEvents must not hold more than {MAX_LOG_EVENTS} events (got {len(events)}).",
            }
        )
    seen = set()

    def problem(rule, **numbers):
        if rule not in seen:
            seen.add(rule)
            problems.append({"rule": rule, **numbers})

    total = 0
    prev = lo = hi = None
    for i, e in enumerate(events):
        msg = e.get("message") if isinstance(e, dict) else None
        ts = e.get("timestamp") if isinstance(e, dict) else None
        if not isinstance(msg, str) or not isinstance(ts, int) or isinstance(ts, bool):
            problem("bad-event", index=i, message=f"logEvents[{i}] needs a string message and an integer timestamp.")
            continue
        n = len(msg.encode("utf-8", "surrogatepass"))
        total += n + LOG_EVENT_OVERHEAD
        if n == 0:
            problem("empty-message", index=i, message=f"logEvents[{i}].message must not be empty.")
        elif n > MAX_LOG_EVENT_BYTES:
            problem(
                "max-event-bytes",
                index=i,
                bytes=n,
                limit=MAX_LOG_EVENT_BYTES,
                message=f"logEvents[{i}].message is {n} bytes, over the limit of {MAX_LOG_EVENT_BYTES}.",
            )
        if prev is not None and ts < prev:
            problem(
                "chronological",
                index=i,
                timestamp=ts,
                previous_timestamp=prev,
                message="Log events in a single PutLogEvents request must be in chronological order "
                f"(logEvents[{i}].timestamp {ts} < {prev}).",
            )
        prev = ts
        lo = ts if lo is None else min(lo, ts)
        hi = ts if hi is None else max(hi, ts)
    if total > MAX_LOG_BATCH_BYTES:
        problem(
            "max-batch-bytes",
            bytes=total,
            limit=MAX_LOG_BATCH_BYTES,
            message=f"Upload too large: {total} bytes exceeds limit of {MAX_LOG_BATCH_BYTES}.",
        )
    if lo is not None and hi - lo > MAX_LOG_SPAN_MS:
        problem(
            "max-span",
            first_timestamp=lo,
            last_timestamp=hi,
            span_ms=hi - lo,
            limit=MAX_LOG_SPAN_MS,
            message="The batch of log events in a single PutLogEvents request cannot span more than 24 hours "
            f"(spans {hi - lo} ms).",
        )
    return problems, {"events": len(events), "bytes": total, "first_timestamp": lo, "last_timestamp": hi}


def read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        return environ["wsgi.input"].read(length)
    if environ.get("wsgi.input_terminated"):
        return environ["wsgi.input"].read()
    return b""


def query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def status_line(code):
    return f"{code} {HTTPStatus(code).phrase}"


def call_app(app, environ):
    """Runs a WSGI app to completion: (status line, headers, body)."""
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    chunks = app(environ, capture)
    try:
        out = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return captured["status"], captured["headers"], out


class Harness:
    def __init__(self, moto_app):
        self.moto = moto_app
        self.calls = Counter()
        self.lock = threading.Lock()
        # op -> [times left, HTTP status, error code]: answers to fail with, set by the tests.
        self.failures = {}
        # Log groups (glob patterns) the device's role may not write: PutLogEvents,
        # CreateLogGroup and CreateLogStream on them answer AccessDeniedException.
        self.denied_groups = set()
        # PutMetricData requests with a datum of one of these names are refused as invalid.
        self.refused_metric_names = set()
        # op -> seconds every call of it waits before being handled, set by the tests.
        self.delays = {}
        # Cognito id tokens from moto last an hour; tests may shorten what InitiateAuth reports.
        self.token_lifetime = None
        # PutLogEvents: broken rules of the requests rejected; summaries of those passed on.
        self.violations = []
        self.log_puts = []

    def wait(self, op):
        seconds = self.delays.get(op)
        if seconds:
            time.sleep(seconds)

    def take_failure(self, op):
        """Returns (HTTP status, error code) if this call of op is to fail."""
        with self.lock:
            failure = self.failures.get(op)
            if failure and failure[0] > 0:
                failure[0] -= 1
                self.calls[op + ".failed"] += 1
                return failure[1], failure[2]
        return None

    def count(self, op):
        with self.lock:
            self.calls[op] += 1

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_harness/"):
            return self.control(environ, start_response, path[len("/_harness/"):])
        # Every AWS request, by how it came: through an HTTP proxy (which adds a Via header)
        # or straight.
        if environ.get("HTTP_VIA"):
            self.count("_proxied")
            return self.through_proxy(environ, start_response)
        self.count("_direct")
        return self.handle(environ, start_response)

    def through_proxy(self, environ, start_response):
        """Answers a request that came through a proxy. tinyproxy waits for the server to close
        after an answer with an empty body, while werkzeug's server, before it closes, waits
        for the proxy to send the rest of a request: a JSON answer with no body gets the empty
        object instead, which means the same to the SDK."""
        status, headers, out = call_app(self.handle, environ)
        if not out and environ.get("HTTP_X_AMZ_TARGET"):
            out = b"{}"
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "application/x-amz-json-1.1"))
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(status, headers)
        return [out]

    def handle(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(CBOR_PREFIX):
            return self.cbor(environ, start_response, path[len(CBOR_PREFIX):])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target:
            # Query-protocol services (STS): the operation is the form's Action.
            if (environ.get("CONTENT_TYPE") or "").startswith("application/x-www-form-urlencoded"):
                raw = read_body(environ)
                action = parse_qs(raw.decode("utf-8", "replace")).get("Action")
                if action:
                    self.count(action[0])
                environ["wsgi.input"] = io.BytesIO(raw)
                environ["CONTENT_LENGTH"] = str(len(raw))
            return self.moto(environ, start_response)
        op = target.split(".")[-1]
        self.count(op)
        self.wait(op)
        failure = self.take_failure(op)
        if failure:
            read_body(environ)
            content_type = environ.get("CONTENT_TYPE") or ""
            if not content_type.startswith("application/x-amz-json-"):
                content_type = "application/x-amz-json-1.1"
            return self.answer_json_error(start_response, failure[0], failure[1], "injected by the test harness", content_type)
        if self.denied_groups and op in LOG_GROUP_OPERATIONS:
            raw = read_body(environ)
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            try:
                group = json.loads(raw or b"{}").get("logGroupName") or ""
            except (ValueError, AttributeError):
                group = ""
            with self.lock:
                denied = any(fnmatch.fnmatchcase(group, g) for g in self.denied_groups)
                if denied:
                    self.calls[op + ".denied"] += 1
            if denied:
                return self.answer_json_error(
                    start_response, 400, "AccessDeniedException",
                    f"User is not authorized to perform: logs:{op} on resource: log-group:{group}",
                    environ.get("CONTENT_TYPE") or "application/x-amz-json-1.1")
        if op == "PutLogEvents":
            return self.put_log_events(environ, start_response)
        if op == "CreateLogGroup":
            # moto does not keep a group's class; the harness does.
            raw = read_body(environ)
            body = json.loads(raw or b"{}")
            if "logGroupClass" in body:
                GROUP_CLASSES[body.get("logGroupName")] = body.pop("logGroupClass")
            raw = json.dumps(body).encode()
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            return self.moto(environ, start_response)
        if op == "InitiateAuth":
            return self.initiate_auth(environ, start_response)
        return self.moto(environ, start_response)

    def control(self, environ, start_response, name):
        q = query(environ)
        if name == "calls":
            with self.lock:
                return self.answer_json(start_response, dict(self.calls))
        if name == "metrics":
            return self.answer_json(start_response, stored_metrics())
        if name == "fail":
            with self.lock:
                self.failures[q["op"]] = [int(q.get("times", 1)), int(q.get("status", 400)), q.get("code", "ThrottlingException")]
            return self.answer_json(start_response, {"ok": True})
        if name == "delay":
            seconds = float(q.get("seconds", 0))
            with self.lock:
                if seconds > 0:
                    self.delays[q["op"]] = seconds
                else:
                    self.delays.pop(q["op"], None)
            return self.answer_json(start_response, {"ok": True})
        if name == "deny-log-groups":
            with self.lock:
                self.denied_groups = {g for g in q.get("pattern", "").split(",") if g}
            return self.answer_json(start_response, {"ok": True})
        if name == "refuse-metric":
            with self.lock:
                if q.get("name"):
                    self.refused_metric_names.add(q["name"])
                else:
                    self.refused_metric_names.clear()
            return self.answer_json(start_response, {"ok": True})
        if name == "token-lifetime":
            self.token_lifetime = int(q["seconds"])
            return self.answer_json(start_response, {"ok": True})
        if name == "violations":
            with self.lock:
                return self.answer_json(start_response, list(self.violations))
        if name == "put-log-events":
            with self.lock:
                puts = list(self.log_puts)
            if q.get("summary") in ("1", "true"):
                return self.answer_json(
                    start_response,
                    {
                        "requests": puts,
                        "max_events": max((p["events"] for p in puts), default=0),
                        "max_bytes": max((p["bytes"] for p in puts), default=0),
                    },
                )
            return self.answer_json(start_response, puts)
        if name == "log-events":
            return self.answer_json(start_response, stored_log_events(q.get("group"), q.get("stream")))
        if name == "log-groups":
            return self.answer_json(start_response, stored_log_groups())
        body = json.dumps({"error": f"no such harness endpoint: {name}"}).encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def put_log_events(self, environ, start_response):
        raw = read_body(environ)
        env = dict(environ)
        if env.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
            raw = gzip.decompress(raw)
            env.pop("HTTP_CONTENT_ENCODING")
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return self.answer_json_error(start_response, 400, "SerializationException", "body is not a JSON object")
        group, stream = req.get("logGroupName"), req.get("logStreamName")
        problems, summary = check_put_log_events(req)
        if problems:
            with self.lock:
                self.calls["PutLogEvents.rejected"] += 1
                for p in problems:
                    self.violations.append({"op": "PutLogEvents", "group": group, "stream": stream, **p})
            message = " ".join(p["message"] for p in problems)
            return self.answer_json_error(start_response, 400, "InvalidParameterException", message)
        env["wsgi.input"] = io.BytesIO(raw)
        env["CONTENT_LENGTH"] = str(len(raw))
        status, headers, out = call_app(self.moto, env)
        record = {"group": group, "stream": stream, **summary, "status": int(status[:3])}
        # Embedded metric format documents are sent with this header (moto ignores it).
        logs_format = environ.get("HTTP_X_AMZN_LOGS_FORMAT")
        if logs_format:
            record["logs_format"] = logs_format
        try:
            answer = json.loads(out) if out.strip() else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict):
            if answer.get("rejectedLogEventsInfo"):
                # moto drops events over 14 days old or 2 hours ahead, and says so here.
                record["rejected_info"] = answer["rejectedLogEventsInfo"]
            if "__type" in answer:
                record["error"] = answer["__type"]
        with self.lock:
            self.log_puts.append(record)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(status, headers)
        return [out]

    def initiate_auth(self, environ, start_response):
        raw = read_body(environ)
        self.count("InitiateAuth." + json.loads(raw or b"{}").get("AuthFlow", "?"))
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(raw)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.moto(env, capture)
        out = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        if self.token_lifetime and captured["status"].startswith("200"):
            value = json.loads(out)
            if "AuthenticationResult" in value:
                value["AuthenticationResult"]["ExpiresIn"] = self.token_lifetime
                out = json.dumps(value).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(captured["status"], headers)
        return [out]

    @staticmethod
    def answer_json(start_response, value):
        body = json.dumps(value).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def answer_json_error(start_response, status, code, message, content_type="application/x-amz-json-1.1"):
        body = json.dumps({"__type": code, "message": message}).encode()
        start_response(
            status_line(status),
            [
                ("Content-Type", content_type),
                ("x-amzn-ErrorType", code),
                ("x-amzn-RequestId", str(uuid.uuid4())),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    @staticmethod
    def answer_cbor(start_response, status, value):
        import cbor2

        body = cbor2.dumps(value)
        headers = [
            ("Content-Type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
            ("Content-Length", str(len(body))),
        ]
        if isinstance(value, dict) and "__type" in value:
            # CloudWatch is awsQuery-compatible: its errors carry the query error code too.
            headers.append(("x-amzn-query-error", f"{value['__type']};Sender"))
        start_response(status, headers)
        return [body]

    def cbor(self, environ, start_response, op):
        import cbor2

        self.count(op)
        self.wait(op)
        failure = self.take_failure(op)
        if failure:
            read_body(environ)
            return self.answer_cbor(start_response, status_line(failure[0]), {"__type": failure[1], "message": "injected by the test harness"})
        raw = read_body(environ)
        if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        if len(raw) > MAX_BODY:
            return self.answer_cbor(start_response, "413 Payload Too Large", {"__type": "RequestEntityTooLarge", "message": "body over 1 MB"})
        req = to_json_value(cbor2.loads(raw)) if raw else {}
        if op == "PutMetricData":
            problem = check_put_metric_data(req, self.refused_metric_names)
            if problem:
                self.count("PutMetricData.rejected")
                return self.answer_cbor(start_response, "400 Bad Request", {"__type": "InvalidParameterValue", "message": problem})
        body = json.dumps(req).encode()
        env = dict(environ)
        env["PATH_INFO"] = "/"
        env["REQUEST_METHOD"] = "POST"
        env["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        env["CONTENT_LENGTH"] = str(len(body))
        env["HTTP_X_AMZ_TARGET"] = f"GraniteServiceVersion20100801.{op}"
        env.pop("HTTP_CONTENT_ENCODING", None)
        env.pop("HTTP_SMITHY_PROTOCOL", None)
        env["wsgi.input"] = io.BytesIO(body)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            return lambda data: None

        chunks = self.moto(env, capture)
        out = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        try:
            value = json.loads(out) if out.strip() else {}
        except ValueError:
            value = {"__type": "InternalFailure", "message": out.decode(errors="replace")[:500]}
        if isinstance(value, dict) and "__type" in value:
            value["__type"] = value["__type"].split("#")[-1]
        return self.answer_cbor(start_response, captured["status"], value)


def stored_metrics():
    """Every datum moto stored: single values (moto stores `Values` with `Counts` as that many
    single values), and statistic sets with their four numbers (`value` is their sum)."""
    from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, cloudwatch_backends

    out = []
    for account in list(cloudwatch_backends.keys()):
        for region, backend in cloudwatch_backends[account].items():
            for d in list(backend.metric_data):
                statistics = None
                if isinstance(d, MetricAggregatedDatum):
                    statistics = {"sample_count": d.sample_count, "sum": d.sum, "min": d.min, "max": d.max}
                elif not isinstance(d, MetricDatum):
                    continue
                ts = d.timestamp
                if isinstance(ts, (int, float)):
                    ms = int(ts * 1000)
                else:
                    if ts.tzinfo is None:
                        ts = ts.replace(tzinfo=datetime.timezone.utc)
                    ms = int(ts.timestamp() * 1000)
                out.append(
                    {
                        "account": account,
                        "region": region,
                        "namespace": d.namespace,
                        "name": d.name,
                        "value": d.sum if statistics else d.value,
                        "statistics": statistics,
                        "unit": d.unit,
                        "dimensions": {dim.name: dim.value for dim in d.dimensions},
                        "timestamp_ms": ms,
                    }
                )
    return out


def logs_groups(with_account=False):
    """Yields every log group moto holds, over all accounts and regions (with its account)."""
    from moto.logs.models import logs_backends

    for account in list(logs_backends.keys()):
        for backend in list(logs_backends[account].values()):
            for group in list(backend.groups.values()):
                yield (account, group) if with_account else group


def stored_log_events(only_group=None, only_stream=None):
    """{group: {stream: [{"timestamp", "message"}]}} of every event moto stored, in the order received."""
    out = {}
    for group in logs_groups():
        if only_group is not None and group.name != only_group:
            continue
        streams = out.setdefault(group.name, {})
        for name, stream in list(group.streams.items()):
            if only_stream is not None and name != only_stream:
                continue
            streams.setdefault(name, []).extend(
                [{"timestamp": e.timestamp, "message": e.message} for e in list(stream.events)]
            )
    return out


# Log group name → the logGroupClass its CreateLogGroup asked for.
GROUP_CLASSES = {}


def stored_log_groups():
    """{group: {"retentionInDays": n or None, "streams": [names], "logGroupClass": class or None,
    "account": the account it was created in}}."""
    out = {}
    for account, group in logs_groups(with_account=True):
        entry = out.setdefault(group.name, {"retentionInDays": group.retention_in_days, "streams": [],
                                            "logGroupClass": GROUP_CLASSES.get(group.name),
                                            "account": account})
        entry["streams"].extend(list(group.streams.keys()))
    return out


def serve(args):
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = Harness(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os

        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"moto harness listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


def cognito_setup(args):
    import boto3

    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    idp = boto3.client("cognito-idp", **kw)
    ident = boto3.client("cognito-identity", **kw)
    pool_args = dict(PoolName="publisher-devices", AdminCreateUserConfig={"AllowAdminCreateUserOnly": True})
    if args.strict_policy:
        # The infrastructure stack's policy.
        pool_args["Policies"] = {"PasswordPolicy": {
            "MinimumLength": 32, "RequireUppercase": True, "RequireLowercase": True,
            "RequireNumbers": True, "RequireSymbols": True}}
    pool = idp.create_user_pool(**pool_args)["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="publisher",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    identity_pool = ident.create_identity_pool(
        IdentityPoolName="publisher_devices",
        AllowUnauthenticatedIdentities=False,
        CognitoIdentityProviders=[{"ProviderName": f"cognito-idp.us-east-1.amazonaws.com/{pool}", "ClientId": client}],
    )["IdentityPoolId"]
    for user in args.username:
        idp.admin_create_user(UserPoolId=pool, Username=user, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username=user, Password=args.password, Permanent=True)
    for user in args.unfinished:
        # Made but never given a permanent password, as an interrupted provisioning leaves it.
        idp.admin_create_user(UserPoolId=pool, Username=user, TemporaryPassword=args.password, MessageAction="SUPPRESS")
    print(json.dumps({"userPoolId": pool, "appClientId": client, "identityPoolId": identity_pool, "accountId": "123456789012"}))


def cognito_users(args):
    """Prints the pool's users as JSON: name → status."""
    import boto3

    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    idp = boto3.client("cognito-idp", **kw)
    users = {}
    for page in idp.get_paginator("list_users").paginate(UserPoolId=args.pool):
        for u in page["Users"]:
            users[u["Username"]] = u["UserStatus"]
    print(json.dumps(users))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    c = sub.add_parser("cognito-setup")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--username", action="append", default=[])
    c.add_argument("--unfinished", action="append", default=[])
    c.add_argument("--password", required=True)
    c.add_argument("--strict-policy", action="store_true")
    u = sub.add_parser("cognito-users")
    u.add_argument("--endpoint", required=True)
    u.add_argument("--pool", required=True)
    args = p.parse_args()
    {"serve": serve, "cognito-setup": cognito_setup, "cognito-users": cognito_users}[args.cmd](args)


if __name__ == "__main__":
    main()
