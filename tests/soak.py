"""Soak: minutes of traced calls from several threads while the collector dies and comes back.

Not part of the test suite (it runs for minutes). ``python tests/soak.py --minutes 3``:

* a receiver process (a counting OTLP/gRPC server, ``benches/counting_receiver.py``) on a fixed
  127.0.0.1 port is killed with SIGKILL every ``--kill-every`` seconds and restarted after
  ``--down-for`` seconds on the same port;
* an application process makes traced calls from ``--threads`` threads for the whole time and
  prints, every ``--report-every`` seconds, callspan's counters and its resident memory;
* at the end the application flushes, shuts down and checks ``exported + dropped == sampled``.

Prints one line per report and a summary; docs/reliability.md keeps the latest figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = HERE.parent / "benches"

RECEIVER = """
import sys, threading, time
sys.path.insert(0, sys.argv[2])
import grpc
from concurrent import futures
from counting_receiver import count_spans, _SERVICE, _EMPTY_RESPONSE

printing = threading.Lock()  # one line per request, never two interleaved

def export(raw, context):
    spans = count_spans_raw(raw)
    with printing:
        print(spans, flush=True)
    return _EMPTY_RESPONSE

from counting_receiver import _envelope_class
Envelope = _envelope_class()
def count_spans_raw(raw):
    return count_spans(Envelope.FromString(raw))

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
handler = grpc.method_handlers_generic_handler(_SERVICE, {
    "Export": grpc.unary_unary_rpc_method_handler(
        export, request_deserializer=None, response_serializer=None)})
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
"""

APPLICATION = """
import json, os, sys, threading, time
import callspan

seconds, threads, report_every = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20

@callspan.trace
def leaf(i):
    return i * 2

@callspan.trace
def handle(i):
    return sum(leaf(i + k) for k in range(4))

stop = time.monotonic() + seconds
def work():
    i = 0
    while time.monotonic() < stop:
        handle(i)
        i += 1
        if i % 8 == 0:
            time.sleep(0.001)  # a busy service (some 20,000 spans/s in all), not a flood

workers = [threading.Thread(target=work) for _ in range(threads)]
for w in workers:
    w.start()
started = time.monotonic()
while any(w.is_alive() for w in workers):
    time.sleep(report_every)
    report = {"t": round(time.monotonic() - started), "rss_mib": round(rss_mib(), 1)}
    print("REPORT " + json.dumps({**report, **callspan.stats()}), flush=True)
for w in workers:
    w.join()
callspan.flush(timeout=15)
callspan.shutdown(timeout=5)
print("FINAL " + json.dumps({"rss_mib": round(rss_mib(), 1), **callspan.stats()}), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The receiver process, counting what arrives across its restarts."""

    def __init__(self, port: int):
        self.port = port
        self.received = 0
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(self.port), str(BENCHES)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"
        threading.Thread(target=self._count, args=(self.process,), daemon=True).start()

    def _count(self, process) -> None:
        for line in process.stdout:
            if line.strip().isdigit():
                self.received += int(line)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--down-for", type=float, default=2.0)
    parser.add_argument("--report-every", type=float, default=15.0)
    args = parser.parse_args()

    receiver = Receiver(free_port())
    receiver.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLSPAN_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_BSP_EXPORT_TIMEOUT="2000",
    )
    seconds = args.minutes * 60
    app = subprocess.Popen(
        [
            sys.executable,
            "-c",
            APPLICATION,
            str(seconds),
            str(args.threads),
            str(args.report_every),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter_lines(app)), daemon=True)
    reader.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline - args.kill_every:
        time.sleep(args.kill_every)
        receiver.kill()
        time.sleep(args.down_for)
        receiver.start()
        receiver.restarts += 1
    app.wait()
    reader.join(5)
    time.sleep(1)
    receiver.kill()

    final = None
    print(f"{'t/s':>5} {'RSS MiB':>8} {'sampled':>10} {'exported':>10} {'dropped':>9} {'queue':>6}")
    for line in lines:
        kind, _, payload = line.partition(" ")
        data = json.loads(payload)
        if kind == "REPORT":
            print(
                f"{data['t']:>5} {data['rss_mib']:>8} {data['spans_sampled']:>10} "
                f"{data['spans_exported']:>10} {data['spans_dropped']:>9} {data['queue_len']:>6}"
            )
        elif kind == "FINAL":
            final = data
    if final is None:
        print("the application printed no final counters")
        return 1
    accounted = final["spans_exported"] + final["spans_dropped"] + final["spans_below_min_duration"]
    print(
        f"final: sampled {final['spans_sampled']}, exported {final['spans_exported']}, "
        f"dropped {final['spans_dropped']} (export failed {final['dropped_export_failed']}, "
        f"queue full {final['dropped_queue_full']}, shutdown {final['dropped_shutdown']}), "
        f"RSS {final['rss_mib']} MiB; receiver counted {receiver.received} across "
        f"{receiver.restarts} restarts"
    )
    balanced = accounted == final["spans_sampled"]
    print("exported + dropped == sampled:", "yes" if balanced else f"NO ({accounted})")
    return 0 if balanced else 1


def iter_lines(process):
    for line in process.stdout:
        if line.startswith(("REPORT ", "FINAL ")):
            yield line.strip()


if __name__ == "__main__":
    sys.exit(main())
