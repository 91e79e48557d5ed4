"""Run the third-party OTLP collector ``rotel`` (PyPI ``rotel``) as a child process in tests.

rotel stands in for the collector a team already runs (OpenTelemetry Collector, Jaeger,
Tempo): spans that pass through it take the same hop they take in production. Its wheel ships
a prebuilt binary, ``rotel/rotel-agent``, inside site-packages; this module finds it, starts it
on free 127.0.0.1 ports, waits until it accepts connections and stops it again.

Quirks of rotel 0.0.1a15 (the binary calls itself "0.0.1-alpha10"):

* Without ``--daemon`` it runs in the foreground and logs to stdout; ``--pid-file`` and
  ``--log-file`` are then ignored. We still pass both (inside our temp dir) so that nothing
  ever touches the defaults ``/tmp/rotel-agent.pid`` / ``/tmp/rotel-agent.log`` shared by all
  users, and we capture stdout/stderr into our own log file.
* It reads every flag from ``ROTEL_*`` environment variables too, so those are removed from
  the child's environment to keep runs reproducible. ``NO_COLOR=1`` keeps ANSI escapes out of
  the log.
* The OTLP exporter compresses with gzip by default (grpcio servers accept that) and batches
  for 200ms by default; we shorten the batch timeout so spans reach the receiver quickly.

This file is named ``rotel.py`` and pytest puts ``tests/`` first on ``sys.path``, so
``import rotel`` inside the test process would import this module, not the package. The binary
is therefore located through the installed distribution's file list, never by importing it.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
AGENT_BINARY_OVERRIDE_ENV = "TEST_ROTEL_AGENT_BINARY"  # path to a rotel-agent binary, if set


def find_rotel_agent() -> Path:
    """Path of the ``rotel-agent`` binary shipped in the ``rotel`` wheel."""
    override = os.environ.get(AGENT_BINARY_OVERRIDE_ENV)
    if override:
        return Path(override)
    try:
        distribution = importlib.metadata.distribution("rotel")
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        for file in distribution.files or ():
            if file.name == "rotel-agent":
                path = Path(distribution.locate_file(file))
                if path.is_file():
                    return path
    on_path = shutil.which("rotel-agent")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "rotel-agent not found: install the test requirements (pip install 'rotel==0.0.1a15') "
        f"or set {AGENT_BINARY_OVERRIDE_ENV}"
    )


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class RotelError(RuntimeError):
    pass


class RotelAgent:
    """One rotel-agent process receiving OTLP on 127.0.0.1 and exporting to ``exporter``.

    ``exporter="otlp"`` forwards to ``exporter_endpoint`` (e.g. a RecordingReceiver's ``endpoint``)
    with ``exporter_protocol`` ("grpc" or "http"); ``exporter="blackhole"`` discards everything.
    ``extra_args`` are appended verbatim (e.g. ``["--debug-log", "traces"]``).
    """

    START_TIMEOUT = 15.0
    STOP_TIMEOUT = 5.0
    START_ATTEMPTS = 3  # free ports are picked before rotel binds them; retry if one got taken

    def __init__(
        self,
        exporter: str = "otlp",
        exporter_endpoint: str | None = None,
        exporter_protocol: str = "grpc",
        batch_timeout: str = "50ms",
        extra_args: list[str] | tuple[str, ...] = (),
    ):
        if exporter == "otlp" and not exporter_endpoint:
            raise ValueError("exporter='otlp' needs exporter_endpoint")
        self.exporter = exporter
        self.exporter_endpoint = exporter_endpoint
        self.exporter_protocol = exporter_protocol
        self.batch_timeout = batch_timeout
        self.extra_args = list(extra_args)
        self.binary = find_rotel_agent()
        self._workdir = Path(tempfile.mkdtemp(prefix="rotel-"))
        self.log_path = self._workdir / "rotel-output.log"
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._process: subprocess.Popen | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "start",
            "--otlp-grpc-endpoint",
            f"{LOOPBACK}:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"{LOOPBACK}:{self.http_port}",
            "--pid-file",
            str(self._workdir / "rotel-agent.pid"),
            "--log-file",
            str(self._workdir / "rotel-agent.log"),
            "--batch-timeout",
            self.batch_timeout,
            "--exporter",
            self.exporter,
        ]
        if self.exporter == "otlp":
            args += [
                "--otlp-exporter-endpoint",
                self.exporter_endpoint,
                "--otlp-exporter-protocol",
                self.exporter_protocol,
            ]
        return args + self.extra_args

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> RotelAgent:
        failures = []
        for _ in range(self.START_ATTEMPTS):
            self.grpc_port, self.http_port = free_port(), free_port()
            while self.http_port == self.grpc_port:
                self.http_port = free_port()
            if self._start_once():
                return self
            failures.append(self.log_text())
            if "in use" not in failures[-1].lower():
                break  # not a port race: retrying will not help
        raise RotelError(
            f"rotel-agent did not start: {' '.join(self.command())}\n--- rotel output ---\n"
            + "\n--- next attempt ---\n".join(failures)
        )

    def _start_once(self) -> bool:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._workdir,
            )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if _accepts_connections(self.grpc_port) and _accepts_connections(self.http_port):
                return True
            time.sleep(0.05)
        self._terminate()
        return False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(self.STOP_TIMEOUT)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; removes the temp dir. Idempotent."""
        self._terminate()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
