"""The OTLP exporter's headers, compression and TLS variables reach our collector: spans go over
mutual TLS, gzip-compressed, with a bearer token that the collector's ``bearertokenauth``
extension checks; a wrong token is refused and counted. A variable infersight can't honour (a
certificate file that isn't there, a header that doesn't parse) fails start-up naming it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infersight.config import Config, ConfigError
from infersight.conventions import METRIC
from stack import LOOPBACK, OtlpSink, ensure_collector, free_port, run_collector, running_sink, wait_until

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
CLIENT = textwrap.dedent(
    """
    import json
    import sys

    import infersight
    from prometheus_client import REGISTRY

    infersight.init(metrics_port=0, gpu="off")
    with infersight.request(model="m", endpoint="/tls"):
        with infersight.model():
            pass
    rt = infersight.get_runtime()
    rt.worker.drain()
    rt.provider.force_flush(10_000)
    exported, dropped = sys.argv[1:]
    get = REGISTRY.get_sample_value
    failed = get(dropped, {"reason": "export_failed"})
    print(json.dumps({"exported": get(exported) or 0, "failed": failed or 0}))
    """
)
METRICS = [f"{METRIC.SPANS_EXPORTED.name}_total", f"{METRIC.SPANS_DROPPED.name}_total"]


def _certificates(tmp: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(cn: str, key: Any, issuer: x509.Name, signer: Any, ca: bool, usage: Any = None) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            sans = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    files: dict[str, Path] = {}

    def write(label: str, cert: x509.Certificate, key: Any) -> None:
        files[f"{label}_cert"] = tmp / f"{label}.crt"
        files[f"{label}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{label}_key"] = tmp / f"{label}.key"
        files[f"{label}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("infersight test CA", ca_key, name("infersight test CA"), ca_key, ca=True)
    write("ca", ca, ca_key)
    for label, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(label, issue(f"infersight test {label}", key, ca.subject, ca_key, ca=False, usage=usage), key)
    return files


@pytest.fixture(scope="module")
def tls_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], OtlpSink]]:
    """Our collector with OTLP over mutual TLS and bearertokenauth, forwarding to a sink."""
    collector = ensure_collector()
    tmp = tmp_path_factory.mktemp("otlp-tls")
    certs = _certificates(tmp)
    ports = {"grpc": free_port(), "http": free_port(), "health": free_port()}
    tls = {
        "cert_file": str(certs["server_cert"]),
        "key_file": str(certs["server_key"]),
        "client_ca_file": str(certs["ca_cert"]),
    }
    auth = {"authenticator": "bearertokenauth"}
    with running_sink() as sink:
        config = {
            "extensions": {
                "bearertokenauth": {"token": TOKEN},
                "health_check": {"endpoint": f"{LOOPBACK}:{ports['health']}"},
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"{LOOPBACK}:{ports['grpc']}", "tls": tls, "auth": auth},
                        "http": {"endpoint": f"{LOOPBACK}:{ports['http']}", "tls": tls, "auth": auth},
                    }
                }
            },
            "exporters": {"otlp_grpc/sink": {"endpoint": f"{LOOPBACK}:{sink.port}", "tls": {"insecure": True}}},
            "service": {
                "extensions": ["bearertokenauth", "health_check"],
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc/sink"]}},
            },
        }
        path = tmp / "otelcol.yaml"
        path.write_text(yaml.safe_dump(config))
        with run_collector(collector, path, tmp / "otelcol.log", health_url=f"http://{LOOPBACK}:{ports['health']}/"):
            yield {"certs": certs, "ports": ports}, sink


def _export(setup: dict[str, Any], protocol: str, token: str) -> dict[str, float]:
    certs, ports = setup["certs"], setup["ports"]
    port = ports["grpc"] if protocol == "grpc" else ports["http"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://{LOOPBACK}:{port}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token},x-team=ml",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        # The _TRACES_ variants win over the general ones: the general ones point at nothing.
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs["ca_cert"]),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(certs["client_key"]),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(certs["client_cert"]),
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5",
        "OTEL_SERVICE_NAME": f"tls-{protocol}-{token}",
    }
    if protocol == "grpc":
        env["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"] = str(certs["ca_cert"])  # the gRPC exporter reads the pair
    out = subprocess.run([sys.executable, "-c", CLIENT, *METRICS], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _services(sink: OtlpSink) -> set[str]:
    return {res.get("service.name", "") for spans in sink.traces().values() for res, _ in spans}


@pytest.mark.stack
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_reach_the_collector_over_mutual_tls_with_the_token(
    tls_collector: tuple[dict[str, Any], OtlpSink], protocol: str
) -> None:
    setup, sink = tls_collector
    counts = _export(setup, protocol, TOKEN)
    assert counts == {"exported": 2, "failed": 0}
    wait_until(lambda: f"tls-{protocol}-{TOKEN}" in _services(sink), 10, what="spans at the sink")


@pytest.mark.stack
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_wrong_token_is_refused_by_the_collector(
    tls_collector: tuple[dict[str, Any], OtlpSink], protocol: str
) -> None:
    setup, sink = tls_collector
    counts = _export(setup, protocol, "wrong")
    assert counts == {"exported": 0, "failed": 2}
    assert f"tls-{protocol}-wrong" not in _services(sink)


# ---- Start-up checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        ({"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"),
        (
            {"OTEL_EXPORTER_OTLP_CLIENT_KEY": "KEY", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/nonexistent/c.pem"},
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        ({"OTEL_EXPORTER_OTLP_CLIENT_KEY": "KEY"}, "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "authorization"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a b=c"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "brotli"}, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
    ],
)
def test_a_setting_the_exporter_cannot_honour_fails_start_up_naming_it(
    env: dict[str, str], var: str, tmp_path: Path
) -> None:
    env = {k: str(tmp_path / "key.pem") if v == "KEY" else v for k, v in env.items()}
    (tmp_path / "key.pem").write_text("key")
    with pytest.raises(ConfigError) as err:
        Config.from_env(env)
    assert err.value.source == var and f"${var}" in str(err.value)


def test_good_values_and_other_exporters_pass(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    good = {
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca),
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x, x-team = ml",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    Config.from_env(good)
    Config.from_env({**good, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    # Not exporting over OTLP: nothing of the exporter's is used, nothing is checked.
    Config.from_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent"})


def test_the_import_line_fails_naming_the_variable() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem",
        "INFERSIGHT_METRICS_PORT": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", "import infersight.auto"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in out.stderr and "/nonexistent/ca.pem" in out.stderr
