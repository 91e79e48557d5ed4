"""End-to-end tests of the OTLP transport configuration: protocols, endpoints, headers, gzip, TLS,
mutual TLS, timeouts, precedence, and what happens with bad values.

Each test runs a small traced script in a child process (see ``PROBE``) against a recording
receiver and asserts on what arrived on the wire: which server and protocol, gRPC metadata or
HTTP headers, the compressed flag of each gRPC message (the receiver's wire tap) or the HTTP
``Content-Encoding``, and the common name of the client certificate. Warnings are read from the
child's stderr, where its ``logging`` prints the ``callspan`` logger.

The certificates are made here, with the ``cryptography`` package: a CA, a server certificate
for 127.0.0.1 signed by it, a client certificate signed by it, and an unrelated CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from e2e_support import parse_output, run_python_script
from otlp_receiver import INVALID, UNAVAILABLE, RecordingReceiver, ServerTls, partial_success
from rotel import free_port

SPANS = 3
CLIENT_CN = "callspan-test-client"
GRPC, HTTP = "grpc", "http/protobuf"
PROTOCOLS = [GRPC, HTTP]

# Traces SPANS calls, flushes, reports what happened. argv: configure() keywords as JSON.
PROBE = """
import json, logging, sys, time

logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(name)s: %(message)s")
import callspan

arguments = json.loads(sys.argv[1])
if arguments:
    callspan.configure(**arguments)


@callspan.trace
def probe(i):
    return i


for i in range(int(sys.argv[2])):
    probe(i)
started = time.monotonic()
flushed = callspan.flush(timeout=float(sys.argv[3]))
facts = {
    "flushed": flushed,
    "flush_seconds": time.monotonic() - started,
    "destination": callspan.destination(),
}
print("FACTS " + json.dumps(facts))
print(json.dumps(callspan.stats()))
"""


# -- certificates ----------------------------------------------------------------------------------


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(subject_cn, key, issuer_cn, issuer_key, *, ca, usage=None, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """PEM files for the TLS tests."""

    ca: Path  # the CA every certificate below is signed by
    other_ca: Path  # a CA nothing here is signed by
    server_chain: bytes
    server_key: bytes
    client_certificate: Path
    client_key: Path
    server_key_file: Path  # a key that does not belong to the client certificate

    def server(self, client_auth: bool = False) -> ServerTls:
        return ServerTls(
            certificate_chain=self.server_chain,
            private_key=self.server_key,
            client_ca=self.ca.read_bytes() if client_auth else None,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    ca = _certificate("callspan test CA", ca_key, "callspan test CA", ca_key, ca=True)
    other_ca = _certificate("unrelated CA", other_key, "unrelated CA", other_key, ca=True)
    server = _certificate(
        "localhost",
        server_key,
        "callspan test CA",
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _certificate(
        CLIENT_CN,
        client_key,
        "callspan test CA",
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    files = {
        "ca.pem": ca,
        "other-ca.pem": other_ca,
        "client.pem": client,
        "client.key": _pem_key(client_key),
        "server.key": _pem_key(server_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_chain=server,
        server_key=_pem_key(server_key),
        client_certificate=directory / "client.pem",
        client_key=directory / "client.key",
        server_key_file=directory / "server.key",
    )


# -- running the probe -----------------------------------------------------------------------------


@dataclass
class Run:
    facts: dict
    stats: dict
    stderr: str

    def warnings(self) -> list[str]:
        """Messages the child logged on the ``callspan`` logger at WARNING."""
        prefix = "LOG WARNING callspan: "
        return [line[len(prefix) :] for line in self.stderr.splitlines() if line.startswith(prefix)]

    def warning(self, *parts: str) -> str:
        """The one warning that contains every part."""
        found = [w for w in self.warnings() if all(part in w for part in parts)]
        assert len(found) == 1, f"expected one warning with {parts}, got:\n{self.stderr}"
        return found[0]


def run_probe(tmp_path, env, arguments=None, spans=SPANS, flush_timeout=10.0) -> Run:
    """Runs PROBE with ``env`` (added to the harness's clean environment, None removes);
    OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL are unset unless ``env`` sets them."""
    overrides = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": None,
        "OTEL_EXPORTER_OTLP_PROTOCOL": None,
        # Loopback receivers: no proxy from the developer's shell, no stray trust store.
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "SSL_CERT_FILE": None,
        "SSL_CERT_DIR": None,
        **{key: (str(value) if value is not None else None) for key, value in env.items()},
    }
    completed = run_python_script(
        PROBE,
        "unused",
        env=overrides,
        timeout=60,
        args=(json.dumps(arguments or {}), spans, flush_timeout),
        workdir=tmp_path,
    )
    output = parse_output(completed.stdout)
    assert output.stats is not None, completed.stdout + completed.stderr
    return Run(output.facts, output.stats, completed.stderr)


def assert_delivered(run: Run, receiver: RecordingReceiver, spans: int = SPANS):
    """Every span arrived (and nothing more); returns the requests."""
    assert run.facts["flushed"] is True, run.stderr
    assert run.stats["spans_exported"] == spans and run.stats["export_errors"] == 0, run.stats
    received = receiver.wait_for_spans(spans, timeout=10)
    assert len(received) == spans
    assert {span.name for span in received} == {"probe"}
    return receiver.requests()


def assert_not_delivered(run: Run, receiver: RecordingReceiver):
    assert run.facts["flushed"] is False, run.stderr
    assert run.stats["spans_exported"] == 0 and run.stats["export_errors"] >= 1, run.stats
    assert receiver.requests() == []


def endpoint_env(receiver: RecordingReceiver, protocol: str) -> dict:
    """The generic endpoint and protocol for ``receiver`` (HTTP: the base URL)."""
    endpoint = receiver.endpoint if protocol == GRPC else receiver.http_endpoint
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}


def wire(protocol: str) -> str:
    return "grpc" if protocol == GRPC else "http"


# -- protocols, gzip, headers ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_compression_and_headers_arrive_on_the_wire(tmp_path, protocol, compression):
    with RecordingReceiver(http=True, grpc_wire_tap=True) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
                "OTEL_EXPORTER_OTLP_HEADERS": "X-Tenant=imaging,authorization=Bearer%20t0k%3D%3D",
            },
        )
        requests = assert_delivered(run, receiver)
        wire_messages = receiver.wire_messages() if protocol == GRPC else []

    gzip = compression == "gzip"
    url = receiver.endpoint if protocol == GRPC else receiver.http_traces_url
    kind = "gRPC" if protocol == GRPC else "HTTP"
    assert run.facts["destination"] == f"OTLP/{kind} to {url}"
    assert run.warnings() == []
    for request in requests:
        assert request.transport == wire(protocol)
        # gRPC metadata / HTTP headers: names lower-cased, values percent-decoded.
        assert request.header("x-tenant") == "imaging"
        assert request.header("authorization") == "Bearer t0k=="
    if protocol == GRPC:
        # Each gRPC message's compressed flag, as it crossed the connection.
        assert len(wire_messages) == len(requests)
        assert all(message.compressed == gzip for message in wire_messages), wire_messages
        if gzip:
            assert sum(m.length for m in wire_messages) < sum(r.encoded_size for r in requests)
    else:
        for request in requests:
            assert request.header("content-type") == "application/x-protobuf"
            assert request.header("content-encoding") == ("gzip" if gzip else None)
            assert (request.wire_size < request.encoded_size) if gzip else True


def test_http_generic_endpoint_is_a_base_and_the_signal_endpoint_is_used_as_given(tmp_path):
    with RecordingReceiver(http=True) as receiver:
        # The generic endpoint is a base: /v1/traces is appended (a trailing slash is fine).
        run = run_probe(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": HTTP,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint + "/",
            },
        )
        assert_delivered(run, receiver)
        assert run.facts["destination"] == f"OTLP/HTTP to {receiver.http_traces_url}"

        # The signal endpoint is the URL itself: posting to "/" gets the receiver's 404.
        receiver.clear()
        run = run_probe(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": HTTP,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            },
        )
        assert_not_delivered(run, receiver)
        run.warning(f"OTLP/HTTP to {receiver.http_endpoint} failed", "404")


# -- precedence ------------------------------------------------------------------------------------

GENERIC_AND_SIGNAL = {
    # Each generic value would be visible on the wire, or break the export (a 1 ms timeout).
    "OTEL_EXPORTER_OTLP_PROTOCOL": GRPC,
    "OTEL_EXPORTER_OTLP_HEADERS": "x-which=generic,x-generic-only=1",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": HTTP,
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-which=signal",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10000",
}


def test_signal_specific_variables_beat_generic_ones(tmp_path):
    generic = RecordingReceiver(http=True, grpc_wire_tap=True)
    signal = RecordingReceiver(http=True)
    with generic, signal:
        run = run_probe(
            tmp_path,
            {
                **GENERIC_AND_SIGNAL,
                "OTEL_EXPORTER_OTLP_ENDPOINT": generic.endpoint,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": signal.http_traces_url,
            },
        )
        requests = assert_delivered(run, signal)
        assert generic.requests() == []

    assert run.warnings() == []
    for request in requests:
        assert request.transport == "http"
        assert request.header("x-which") == "signal"
        assert request.header("x-generic-only") is None  # the signal headers replace them all
        assert request.header("content-encoding") is None


def test_configure_keywords_beat_every_variable(tmp_path):
    chosen = RecordingReceiver(http=True, grpc_wire_tap=True)
    signal = RecordingReceiver(http=True)
    with chosen, signal:
        run = run_probe(
            tmp_path,
            {
                **GENERIC_AND_SIGNAL,
                "OTEL_EXPORTER_OTLP_ENDPOINT": signal.endpoint,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": signal.http_traces_url,
            },
            arguments={
                "endpoint": chosen.endpoint,
                "protocol": "GRPC",
                "headers": {"x-which": "argument"},
                "compression": "gzip",
                "timeout_ms": 10000,
            },
        )
        requests = assert_delivered(run, chosen)
        wire_messages = chosen.wire_messages()
        assert signal.requests() == []

    assert run.warnings() == []
    assert {request.transport for request in requests} == {"grpc"}
    assert {request.header("x-which") for request in requests} == {"argument"}
    assert wire_messages and all(message.compressed for message in wire_messages)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_values_given_in_code_beat_the_environment(tmp_path, protocol):
    # Headers and compression from configure() replace the environment's, never merge with it
    # (opentelemetry-otlp's builders used to merge OTEL_EXPORTER_OTLP_HEADERS in on their own).
    with RecordingReceiver(http=True, grpc_wire_tap=True) as receiver:
        arguments = {"headers": {"x-from-code": "1"}}
        env = {**endpoint_env(receiver, protocol), "OTEL_EXPORTER_OTLP_HEADERS": "x-from-env=1"}
        if protocol == HTTP:
            arguments["compression"] = "none"
            env["OTEL_EXPORTER_OTLP_COMPRESSION"] = "gzip"
        run = run_probe(tmp_path, env, arguments=arguments)
        requests = assert_delivered(run, receiver)

    assert run.warnings() == []
    for request in requests:
        assert request.header("x-from-code") == "1"
        assert request.header("x-from-env") is None
        if protocol == HTTP:
            assert request.header("content-encoding") is None
            assert request.wire_size == request.encoded_size


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_compression_none_from_code_beats_gzip_in_the_environment(tmp_path, protocol):
    # callspan sends its own requests, so what it resolved is what goes on the wire (with
    # opentelemetry-otlp's exporter, gRPC gzipped anyway: it read the variable itself).
    with RecordingReceiver(http=True, grpc_wire_tap=True) as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, protocol), "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
            arguments={"compression": "none"},
        )
        requests = assert_delivered(run, receiver)
        wire_messages = receiver.wire_messages() if protocol == GRPC else []

    assert run.warnings() == []
    if protocol == GRPC:
        assert wire_messages and not any(message.compressed for message in wire_messages)
    else:
        assert all(request.header("content-encoding") is None for request in requests)


# -- TLS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_a_ca_certificate_file(tmp_path, pki, protocol):
    with RecordingReceiver(http=True, tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, protocol), "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca},
        )
        requests = assert_delivered(run, receiver)

    assert run.facts["destination"].split(" to ")[1].startswith("https://127.0.0.1:")
    assert run.warnings() == []
    assert {request.transport for request in requests} == {wire(protocol)}
    assert {request.client_certificate_cn for request in requests} == {None}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_refuses_a_server_the_ca_file_does_not_vouch_for(tmp_path, pki, protocol):
    with RecordingReceiver(http=True, tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                # The signal variable wins over the generic one, which would have worked.
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": pki.other_ca,
                "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "3000",
            },
        )
        assert_not_delivered(run, receiver)
    run.warning("failed", "127.0.0.1")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_without_a_ca_file_trusts_the_system_store(tmp_path, pki, protocol):
    # The system store honours SSL_CERT_FILE, which lets the test put its CA in it.
    with RecordingReceiver(http=True, tls=pki.server()) as receiver:
        run = run_probe(tmp_path, {**endpoint_env(receiver, protocol), "SSL_CERT_FILE": pki.ca})
        assert_delivered(run, receiver)
    assert run.warnings() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_sends_the_client_certificate(tmp_path, pki, protocol):
    with RecordingReceiver(http=True, tls=pki.server(client_auth=True)) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": pki.client_key,
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.client_certificate,
            },
        )
        requests = assert_delivered(run, receiver)
    assert run.warnings() == []
    assert {request.client_certificate_cn for request in requests} == {CLIENT_CN}


def test_mutual_tls_through_configure_keywords_with_paths(tmp_path, pki):
    with RecordingReceiver(tls=pki.server(client_auth=True)) as receiver:
        run = run_probe(
            tmp_path,
            {"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/nowhere/ignored-because-the-keyword-wins.key"},
            arguments={
                "endpoint": receiver.endpoint,
                "certificate": str(pki.ca),
                "client_key": str(pki.client_key),
                "client_certificate": str(pki.client_certificate),
            },
        )
        requests = assert_delivered(run, receiver)
    assert run.warnings() == []
    assert {request.client_certificate_cn for request in requests} == {CLIENT_CN}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_without_a_client_certificate_is_refused(tmp_path, pki, protocol):
    with RecordingReceiver(http=True, tls=pki.server(client_auth=True)) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "3000",
            },
        )
        assert_not_delivered(run, receiver)
    run.warning("failed", "127.0.0.1")


def test_insecure_decides_the_scheme_of_a_grpc_endpoint_without_one(tmp_path, pki):
    with RecordingReceiver() as plain:
        bare = plain.endpoint.removeprefix("http://")
        run = run_probe(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": bare,
                "OTEL_EXPORTER_OTLP_INSECURE": "false",
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "True",
            },
        )
        assert_delivered(run, plain)
        assert run.facts["destination"] == f"OTLP/gRPC to http://{bare}"

    with RecordingReceiver(tls=pki.server()) as secure:
        # Without INSECURE a bare endpoint means TLS.
        bare = secure.endpoint.removeprefix("https://")
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": bare, "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca}
        run = run_probe(tmp_path, env)
        assert_delivered(run, secure)
        assert run.facts["destination"] == f"OTLP/gRPC to https://{bare}"

        # A scheme wins over INSECURE.
        secure.clear()
        env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": secure.endpoint}
        run = run_probe(tmp_path, {**env, "OTEL_EXPORTER_OTLP_INSECURE": "true"})
        assert_delivered(run, secure)
    assert run.warnings() == []


# -- retries and partial success -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_busy_receiver_is_retried_and_gets_every_span_once(tmp_path, protocol):
    with RecordingReceiver(http=True) as receiver:
        receiver.plan(UNAVAILABLE, UNAVAILABLE)
        run = run_probe(tmp_path, endpoint_env(receiver, protocol))
        assert_delivered(run, receiver)
        assert [refusal for _, refusal in receiver.refused()] == [UNAVAILABLE, UNAVAILABLE]
        assert {transport for transport, _ in receiver.refused()} == {wire(protocol)}
        assert len(receiver.requests()) == 1
    # A retry that succeeds is nobody's concern.
    assert run.warnings() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_refusal_that_retrying_cannot_fix_is_reported_once_and_not_retried(tmp_path, protocol):
    with RecordingReceiver(http=True) as receiver:
        receiver.plan(INVALID)
        run = run_probe(tmp_path, endpoint_env(receiver, protocol))
        assert_not_delivered(run, receiver)
        assert len(receiver.refused()) == 1
    assert run.stats["dropped_export_failed"] == SPANS
    cause = "InvalidArgument" if protocol == GRPC else "400"
    warning = run.warning("failed", cause, "cannot accept these spans", f"{SPANS} spans dropped")
    assert "retr" not in warning


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_a_receiver_rejects_in_a_partial_success_are_counted_and_reported(tmp_path, protocol):
    with RecordingReceiver(http=True) as receiver:
        receiver.plan(partial_success(2, "spans too old"))
        run = run_probe(tmp_path, endpoint_env(receiver, protocol))
        receiver.wait_for_spans(SPANS, timeout=10)
        # Accepted, so never sent again (the spec forbids retrying a partial success).
        assert len(receiver.requests()) == 1
    assert run.facts["flushed"] is False
    assert run.stats["spans_exported"] == SPANS - 2, run.stats
    assert run.stats["dropped_export_failed"] == 2, run.stats
    run.warning(f"rejected 2 of {SPANS} spans: spans too old")


# -- timeouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_otlp_timeout_bounds_each_export_and_the_signal_variable_wins(tmp_path, protocol):
    with RecordingReceiver(http=True, response_delay=1.0) as receiver:
        env = {**endpoint_env(receiver, protocol), "OTEL_EXPORTER_OTLP_TIMEOUT": "200"}
        run = run_probe(tmp_path, env, spans=1)
        # The request arrived, but its answer came too late: the export failed after ~200 ms.
        assert run.facts["flushed"] is False, run.stderr
        assert run.facts["flush_seconds"] < 0.9, run.facts
        assert run.stats["export_errors"] >= 1 and run.stats["spans_exported"] == 0
        run.warning("failed", "127.0.0.1")
        assert receiver.wait_for_spans(1, timeout=5)

        receiver.clear()
        run = run_probe(tmp_path, {**env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5000"}, spans=1)
        assert_delivered(run, receiver, spans=1)
        assert run.facts["flush_seconds"] >= 0.9, run.facts


# -- bad values: one warning each, and the program goes on -----------------------------------------


def test_unparseable_timeout_warns_and_uses_the_default(tmp_path):
    with RecordingReceiver() as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, GRPC), "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        'OTEL_EXPORTER_OTLP_TIMEOUT: invalid value "soon" (expected a positive integer of '
        "milliseconds); using 10000ms, the default"
    ]


def test_unknown_signal_protocol_warns_and_the_generic_one_applies(tmp_path):
    with RecordingReceiver(http=True) as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, GRPC), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
        )
        requests = assert_delivered(run, receiver)
    assert {request.transport for request in requests} == {"grpc"}
    assert run.warnings() == [
        'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: invalid value "http/json" (http/json is not '
        "supported; expected grpc or http/protobuf); using grpc from OTEL_EXPORTER_OTLP_PROTOCOL"
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_compression_is_warned_about_once(tmp_path, protocol):
    # One warning, naming the variable and what is used instead; not one per export.
    with RecordingReceiver(http=True) as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, protocol), "OTEL_EXPORTER_OTLP_COMPRESSION": "Brotli"},
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        'OTEL_EXPORTER_OTLP_COMPRESSION: invalid value "Brotli" (expected gzip or none); '
        "using none, the default"
    ]
    assert run.stderr.count("Brotli") == 1, run.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_malformed_header_entries_are_skipped_without_showing_values(tmp_path, protocol):
    with RecordingReceiver(http=True) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                "OTEL_EXPORTER_OTLP_HEADERS": (
                    "x-tenant=imaging,Authorization=Bearer%20s3cret,broken,bad key=s3cret,x-e=%ZZ"
                ),
            },
        )
        requests = assert_delivered(run, receiver)
    for request in requests:
        assert request.header("x-tenant") == "imaging"
        assert request.header("authorization") == "Bearer s3cret"
        assert request.header("x-e") is None
    warning = run.warning("OTEL_EXPORTER_OTLP_HEADERS: ignoring")
    assert "\"broken\" (no '=')" in warning and "bad key" in warning and "x-e" in warning
    assert warning.endswith("using x-tenant=…,authorization=… from OTEL_EXPORTER_OTLP_HEADERS"), (
        warning
    )
    assert "s3cret" not in run.stderr


def test_http_endpoint_without_scheme_warns_and_the_next_one_applies(tmp_path):
    with RecordingReceiver(http=True) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, HTTP),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"127.0.0.1:{receiver.http_port}/v1/traces",
            },
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        f'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: invalid value "127.0.0.1:{receiver.http_port}'
        '/v1/traces" (an OTLP/HTTP endpoint needs a scheme, http:// or https://); using '
        f"{receiver.http_traces_url} from OTEL_EXPORTER_OTLP_ENDPOINT"
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_endpoint_warns_and_exit_stays_bounded(tmp_path, protocol):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        "OTEL_BSP_EXPORT_TIMEOUT": "3000",
    }
    run = run_probe(tmp_path, env, flush_timeout=5)
    assert run.facts["flushed"] is False
    assert run.facts["flush_seconds"] < 4.5, run.facts
    assert run.stats["export_errors"] >= 1 and run.stats["spans_exported"] == 0
    run.warning("failed", f"127.0.0.1:{port}")


def test_unreadable_certificate_file_warns_and_the_system_store_applies(tmp_path, pki):
    missing = tmp_path / "missing-ca.pem"
    with RecordingReceiver(tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, GRPC),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": missing,
                "SSL_CERT_FILE": pki.ca,
            },
        )
        assert_delivered(run, receiver)
    warning = run.warning("OTEL_EXPORTER_OTLP_CERTIFICATE")
    assert warning.startswith(f'OTEL_EXPORTER_OTLP_CERTIFICATE: invalid value "{missing}" ')
    assert "cannot read it" in warning
    assert warning.endswith("using none (the system's trusted roots), the default")


def test_corrupt_certificate_file_warns_and_the_system_store_applies(tmp_path, pki):
    corrupt = tmp_path / "corrupt-ca.pem"
    corrupt.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    with RecordingReceiver(http=True, tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, HTTP),
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": corrupt,
                "SSL_CERT_FILE": pki.ca,
            },
        )
        assert_delivered(run, receiver)
    warning = run.warning("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
    assert f'cannot use "{corrupt}"' in warning
    assert warning.endswith("using the system's trusted roots")


def test_client_key_that_does_not_match_the_certificate_is_dropped(tmp_path, pki):
    with RecordingReceiver(http=True, tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, HTTP),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
                "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.server_key_file,
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.client_certificate,
            },
        )
        requests = assert_delivered(run, receiver)
    assert {request.client_certificate_cn for request in requests} == {None}
    warning = run.warning("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    assert "cannot be used together" in warning
    assert warning.endswith("using no client certificate")


def test_client_key_without_certificate_warns(tmp_path, pki):
    with RecordingReceiver(tls=pki.server()) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, GRPC),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
                "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.client_key,
            },
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        f'OTEL_EXPORTER_OTLP_CLIENT_KEY: "{pki.client_key}" is set without a client certificate '
        "(OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE); using no client certificate"
    ]


# -- several exporters at once (OTEL_TRACES_EXPORTER is a list) ----------------------------------


def _file_span_names(path: Path) -> list[str]:
    return [
        span["name"]
        for line in path.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_list_of_exporters_sends_every_span_to_each(tmp_path, protocol):
    spans_file = tmp_path / "spans.jsonl"
    with RecordingReceiver(http=True) as receiver:
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, protocol),
                "OTEL_TRACES_EXPORTER": "otlp, console,file,otlp",
                "CALLSPAN_FILE": spans_file,
            },
        )
        assert_delivered(run, receiver)
    assert run.warnings() == []
    assert _file_span_names(spans_file) == ["probe"] * SPANS
    console = [line for line in run.stderr.splitlines() if line.startswith("callspan: probe ")]
    assert len(console) == SPANS, run.stderr
    url = receiver.endpoint if protocol == GRPC else receiver.http_traces_url
    kind = "gRPC" if protocol == GRPC else "HTTP"
    assert run.facts["destination"] == (
        f"OTLP/{kind} to {url} and the console (stderr) and OTLP JSON lines in {spans_file}"
    )


def test_a_span_is_exported_when_every_exporter_took_it(tmp_path):
    # The collector refuses connections; the file still gets every span, which counts as
    # dropped (not delivered everywhere), and the failure is said.
    spans_file = tmp_path / "spans.jsonl"
    endpoint = f"http://127.0.0.1:{free_port()}"
    run = run_probe(
        tmp_path,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
            "OTEL_TRACES_EXPORTER": "file,otlp",
            "CALLSPAN_FILE": spans_file,
        },
        flush_timeout=5,
    )
    assert run.facts["flushed"] is False
    assert _file_span_names(spans_file) == ["probe"] * SPANS
    stats = run.stats
    assert stats["spans_exported"] == 0 and stats["dropped_export_failed"] == SPANS, stats
    run.warning("failed", endpoint)


def test_entries_of_the_exporter_list_that_are_not_exporters_are_said_and_skipped(tmp_path):
    with RecordingReceiver() as receiver:
        run = run_probe(
            tmp_path,
            {**endpoint_env(receiver, GRPC), "OTEL_TRACES_EXPORTER": "otlp,zipkin"},
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        'OTEL_TRACES_EXPORTER: ignoring "zipkin" (the exporters are otlp, console and file, '
        "and none means none of them, alone); using otlp"
    ]


# -- endpoints that cannot work --------------------------------------------------------------------


def test_grpc_endpoint_without_scheme_that_is_not_an_address_warns(tmp_path):
    with RecordingReceiver() as receiver:
        bare = receiver.endpoint.removeprefix("http://")
        run = run_probe(
            tmp_path,
            {
                **endpoint_env(receiver, GRPC),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{bare}/v1/traces",
            },
        )
        assert_delivered(run, receiver)
    assert run.warnings() == [
        f'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: invalid value "{bare}/v1/traces" (expected '
        f"host:port or a URL with http:// or https://); using {receiver.endpoint} from "
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_to_a_plain_text_collector_says_so(tmp_path, protocol):
    with RecordingReceiver(http=True) as receiver:
        plain = receiver.endpoint if protocol == GRPC else receiver.http_endpoint
        secure = plain.replace("http://", "https://")
        run = run_probe(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": secure,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
            },
            flush_timeout=5,
        )
        assert_not_delivered(run, receiver)
    warning = run.warning("failed", secure)
    assert "speaks plain text" in warning and plain in warning, warning
