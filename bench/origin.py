#!/usr/bin/env python3
"""A local image origin for the bench: serves one file at every path, over
HTTP or HTTPS (--cert/--key), with an ETag, a Last-Modified and, with
--max-age, a Cache-Control lifetime. Prints "ready PORT" once listening;
stopped by its pid."""
import argparse
import http.server
import ssl
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--max-age", type=int)
    args = ap.parse_args()
    with open(args.file, "rb") as f:
        body = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"bench-v1"')
            self.send_header("Last-Modified", "Wed, 02 Dec 2026 06:00:00 GMT")
            if args.max_age is not None:
                self.send_header("Cache-Control", f"public, max-age={args.max_age}")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        # The default backlog (5) drops connections under c=16 and adds
        # one-second SYN retries to the tail.
        request_queue_size = 256

    server = Server(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # The handshake runs in the connection's thread, on its first read,
        # not in the accept loop.
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
