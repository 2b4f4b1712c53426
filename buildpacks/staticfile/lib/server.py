"""A small static file server for the staticfile buildpack.

Serves the folder written in /home/vcap/deps/staticfile/root (relative to the app) on
$PORT: correct content types, index.html for folders, 404 for anything missing, hidden
files and the buildpack's own files never served, and no path outside the folder.
Each response says which instance answered in X-Instance-Index.
"""
import http.server
import os
import sys

APP = "/home/vcap/app"
HIDDEN = {"Staticfile", "Procfile", "manifest.yml"}


def serving_root():
    try:
        with open("/home/vcap/deps/staticfile/root") as f:
            rel = f.read().strip() or "."
    except OSError:
        rel = "."
    return os.path.realpath(os.path.join(APP, rel))


ROOT = serving_root()


class Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "paas-staticfile"
    sys_version = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def end_headers(self):
        self.send_header("X-Instance-Index", os.environ.get("CF_INSTANCE_INDEX", "0"))
        super().end_headers()

    def send_head(self):
        path = self.translate_path(self.path)
        real = os.path.realpath(path)
        rel = os.path.relpath(real, ROOT)
        parts = [] if rel == "." else rel.split(os.sep)
        escapes = rel == ".." or rel.startswith(".." + os.sep)
        hidden = any(p.startswith(".") for p in parts) or (parts and parts[0] in HIDDEN and len(parts) == 1)
        if escapes or hidden:
            self.send_error(404, "Not Found")
            return None
        if os.path.isdir(real) and not os.path.isfile(os.path.join(real, "index.html")):
            self.send_error(404, "Not Found")
            return None
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, "Not Found")
        return None

    def log_message(self, fmt, *args):
        sys.stdout.write("%s - %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print("serving %s on port %d" % (ROOT, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
