#!/usr/bin/env python3
"""Test harness around moto's server, the AWS emulator the integration tests talk to.

`serve` runs moto on 127.0.0.1 behind a small WSGI layer that
  * speaks CloudWatch's Smithy RPC v2 CBOR protocol, which the current AWS SDK uses and moto
    does not: CBOR requests are decoded, checked against PutMetricData's limits (moto does not
    enforce them) and forwarded to moto as the JSON 1.0 protocol it understands; answers are
    encoded back to CBOR;
  * counts the operations it sees (GET /_harness/calls);
  * lists the metric datums moto stored, with their own timestamps (GET /_harness/metrics);
  * reports a shorter id token lifetime from InitiateAuth on request
    (GET /_harness/token-lifetime?seconds=125), so token renewal can be tested in minutes;
  * fails the next N calls of an operation on request, as throttling or a server error would
    (GET /_harness/fail?op=PutMetricData&times=2&status=400&code=ThrottlingException).

`cognito-setup` creates a user pool, app client, identity pool and one user, as a
provisioning run would, and prints their ids as JSON.
"""

import argparse
import base64
import datetime
import gzip
import io
import json
import math
import sys
import threading
import time
from collections import Counter

CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
MAX_DATUMS = 1000
MAX_BODY = 1_000_000
MAX_AGE_S = 14 * 24 * 3600
MAX_AHEAD_S = 2 * 3600


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


def check_put_metric_data(req):
    """Returns an error message if the request breaks a limit CloudWatch enforces."""
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
        v = d.get("Value")
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return f"MetricData[{i}].Value is not a finite number."
        if len(d.get("Dimensions") or []) > 30:
            return f"MetricData[{i}] has more than 30 dimensions."
    return None


class Harness:
    def __init__(self, moto_app):
        self.moto = moto_app
        self.calls = Counter()
        self.lock = threading.Lock()
        # op -> [times left, HTTP status, error code]: answers to fail with, set by the tests.
        self.failures = {}
        # Cognito id tokens from moto last an hour; tests may shorten what InitiateAuth reports.
        self.token_lifetime = None

    def count(self, op):
        with self.lock:
            self.calls[op] += 1

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_harness/calls":
            with self.lock:
                return self.answer_json(start_response, dict(self.calls))
        if path == "/_harness/metrics":
            return self.answer_json(start_response, stored_metrics())
        if path == "/_harness/fail":
            from urllib.parse import parse_qs

            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            with self.lock:
                self.failures[q["op"]] = [int(q.get("times", 1)), int(q.get("status", 400)), q.get("code", "ThrottlingException")]
            return self.answer_json(start_response, {"ok": True})
        if path.startswith(CBOR_PREFIX):
            return self.cbor(environ, start_response, path[len(CBOR_PREFIX):])
        if path == "/_harness/token-lifetime":
            from urllib.parse import parse_qs

            self.token_lifetime = int(parse_qs(environ.get("QUERY_STRING", ""))["seconds"][0])
            return self.answer_json(start_response, {"ok": True})
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            self.count(target.split(".")[-1])
        if target.endswith(".InitiateAuth"):
            return self.initiate_auth(environ, start_response)
        return self.moto(environ, start_response)

    def initiate_auth(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
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
        with self.lock:
            failure = self.failures.get(op)
            if failure and failure[0] > 0:
                failure[0] -= 1
                self.calls[op + ".failed"] += 1
            else:
                failure = None
        if failure:
            status = {400: "400 Bad Request", 500: "500 Internal Server Error", 503: "503 Service Unavailable"}[failure[1]]
            return self.answer_cbor(start_response, status, {"__type": failure[2], "message": "injected by the test harness"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        if len(raw) > MAX_BODY:
            return self.answer_cbor(start_response, "413 Payload Too Large", {"__type": "RequestEntityTooLarge", "message": "body over 1 MB"})
        req = to_json_value(cbor2.loads(raw)) if raw else {}
        if op == "PutMetricData":
            problem = check_put_metric_data(req)
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
    from moto.cloudwatch.models import MetricDatum, cloudwatch_backends

    out = []
    for account in list(cloudwatch_backends.keys()):
        for region, backend in cloudwatch_backends[account].items():
            for d in list(backend.metric_data):
                if not isinstance(d, MetricDatum):
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
                        "region": region,
                        "namespace": d.namespace,
                        "name": d.name,
                        "value": d.value,
                        "unit": d.unit,
                        "dimensions": {dim.name: dim.value for dim in d.dimensions},
                        "timestamp_ms": ms,
                    }
                )
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
    pool = idp.create_user_pool(PoolName="publisher-devices", AdminCreateUserConfig={"AllowAdminCreateUserOnly": True})["UserPool"]["Id"]
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
    print(json.dumps({"userPoolId": pool, "appClientId": client, "identityPoolId": identity_pool, "accountId": "123456789012"}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    c = sub.add_parser("cognito-setup")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--username", action="append", required=True)
    c.add_argument("--password", required=True)
    args = p.parse_args()
    {"serve": serve, "cognito-setup": cognito_setup}[args.cmd](args)


if __name__ == "__main__":
    main()
