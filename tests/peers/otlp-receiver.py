"""A minimal OTLP/HTTP logs receiver for tests: every POST body is decoded with the official
OpenTelemetry protobuf definitions (opentelemetry-proto; JSON encoding, unknown fields rejected)
and each LogRecord is appended, as JSON, to the file given as the first argument.

Listens on 127.0.0.1 on a free port and prints "listening <port>" on stdout. Answers 400 to a body
that is not a valid ExportLogsServiceRequest (and notes the error in <file>.errors).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

OUT = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            request = json_format.Parse(body, ExportLogsServiceRequest(), ignore_unknown_fields=False)
        except Exception as error:  # noqa: BLE001 - any decode failure is the client's
            with open(OUT + ".errors", "a") as f:
                f.write(str(error) + "\n")
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(error).encode())
            return
        with open(OUT, "a") as f:
            for resource_logs in request.resource_logs:
                attributes = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        entry = json_format.MessageToDict(record)
                        entry["service"] = attributes.get("service.name")
                        entry["scope"] = scope_logs.scope.name
                        f.write(json.dumps(entry) + "\n")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
