"""A small Flask web app: each request is a span, the hot functions it calls are its children.

``TraceRequests`` (WSGI middleware) opens one traced ``http.request`` span per request; when the
client sends a W3C ``traceparent`` header, that remote span becomes its parent, so the request
joins the client's trace. The views call the traced hot functions ``PriceBook.lookup_price`` and
``format_money``; their spans name the view that called them (``caller.function.name``).

    python examples/web_app.py            # serves on 127.0.0.1, sends itself 20 requests, stops
    python examples/web_app.py --serve 8000   # keeps serving: curl localhost:8000/quote/ab-1
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callspan  # noqa: E402
import where_spans_go  # noqa: E402
from flask import Flask, request  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

# What a client that traces its own calls sends (trace and span id of its current span).
CLIENT_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class PriceBook:
    def __init__(self):
        self.prices = {f"ab-{n}": 100 + 7 * n for n in range(50)}

    @callspan.trace
    def lookup_price(self, sku: str) -> int:
        return self.prices.get(sku, 0)


@callspan.trace
def format_money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} EUR"


BOOK = PriceBook()
app = Flask(__name__)


@app.get("/quote/<sku>")
def quote(sku):
    return {"sku": sku, "price": format_money(BOOK.lookup_price(sku))}


@app.get("/basket")
def basket():
    skus = [sku for sku in request.args.get("skus", "").split(",") if sku]
    total = 0
    for sku in skus:
        total += BOOK.lookup_price(sku)
    return {"items": len(skus), "total": format_money(total)}


class TraceRequests:
    """WSGI middleware: one traced span per request, child of the client's traceparent."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        with callspan.remote_parent(environ.get("HTTP_TRACEPARENT")):
            return self.handle(environ, start_response)

    @callspan.trace(name="http.request")
    def handle(self, environ, start_response):
        # Flask runs the view inside this call, so the view's traced calls are children.
        return self.wsgi_app(environ, start_response)


app.wsgi_app = TraceRequests(app.wsgi_app)


def send_requests(base: str) -> None:
    for n in range(10):
        urllib.request.urlopen(f"{base}/quote/ab-{n}").read()
    for n in range(10):
        wanted = urllib.request.Request(
            f"{base}/basket?skus=ab-{n},ab-{n + 1},ab-{n + 2}",
            headers={"traceparent": CLIENT_TRACEPARENT},
        )
        urllib.request.urlopen(wanted).read()


def main(argv: list[str]) -> int:
    where_spans_go.start("web-app")
    if argv[:1] == ["--serve"]:
        port = int(argv[1]) if len(argv) > 1 else 8000
        print(f"serving on http://127.0.0.1:{port} (Ctrl-C stops)")
        try:
            make_server("127.0.0.1", port, app, threaded=True).serve_forever()
        except KeyboardInterrupt:
            pass
        return where_spans_go.finish()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log for our requests
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="http-server", daemon=True)
    thread.start()
    send_requests(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    thread.join()
    print("served 20 requests (10 with the client's traceparent)")
    return where_spans_go.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
