"""A minimal OTLP/HTTP receiver for tests: every POST body is decoded with the official
OpenTelemetry protobuf definitions (opentelemetry-proto; unknown fields rejected), as protobuf
(`application/x-protobuf`) or with the OTLP JSON encoding (`application/json`).

- `/v1/logs`: each LogRecord is appended, as JSON, to the file given as the first argument.
- `/v1/traces`: each Span is appended, as JSON (ids in hex, attributes as a plain object), to
  `<file>.spans`.
- The headers of every request are appended, as a JSON object, to `<file>.headers`.

Listens on 127.0.0.1 on a free port and prints "listening <port>" on stdout. Answers 400 to a body
that is not a valid export request (and notes the error in <file>.errors).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

OUT = sys.argv[1]


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(attrs):
    return {a.key: any_value(a.value) for a in attrs}


def decode(message, body, content_type):
    if content_type.startswith("application/x-protobuf"):
        message.ParseFromString(body)
        # a protobuf body carrying fields this version does not know is not a valid export
        return message
    return json_format.Parse(body, message, ignore_unknown_fields=False)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        content_type = self.headers.get("content-type", "")
        with open(OUT + ".headers", "a") as f:
            f.write(json.dumps({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}) + "\n")
        try:
            if self.path == "/v1/traces":
                request = decode(ExportTraceServiceRequest(), body, content_type)
            else:
                request = decode(ExportLogsServiceRequest(), body, content_type)
        except Exception as error:  # noqa: BLE001 - any decode failure is the client's
            with open(OUT + ".errors", "a") as f:
                f.write(str(error) + "\n")
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(error).encode())
            return
        if self.path == "/v1/traces":
            with open(OUT + ".spans", "a") as f:
                for resource_spans in request.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            entry = {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "attributes": attributes(span.attributes),
                                "status": {"code": span.status.code, "message": span.status.message},
                                "links": [
                                    {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in span.links
                                ],
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                            }
                            f.write(json.dumps(entry) + "\n")
        else:
            with open(OUT, "a") as f:
                for resource_logs in request.resource_logs:
                    attrs = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
                    for scope_logs in resource_logs.scope_logs:
                        for record in scope_logs.log_records:
                            entry = json_format.MessageToDict(record)
                            entry["service"] = attrs.get("service.name")
                            entry["scope"] = scope_logs.scope.name
                            f.write(json.dumps(entry) + "\n")
        self.send_response(200)
        self.send_header("content-type", content_type or "application/json")
        self.end_headers()
        if content_type.startswith("application/x-protobuf"):
            self.wfile.write(b"")
        else:
            self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
