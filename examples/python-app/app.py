"""A minimal web app: answers every GET with JSON naming the instance that answered."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "app": json.loads(os.environ.get("VCAP_APPLICATION", "{}")).get("application_name"),
            "instance_index": int(os.environ.get("CF_INSTANCE_INDEX", "0")),
            "language": "python",
            "path": self.path,
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"listening on port {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Hello).serve_forever()
