"""Helpers of the Instagram integration tests: constants, sample media, a movable clock, the
loopback FTP server (plain, or explicit FTPS with a certificate made here), settings for the
stand-ins."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carrier.clients.instagram.client import InstagramClient
from carrier.settings import InstagramSettings
from carrier.testing.graph_api import FakeGraphAPI

# pyftpdlib runs on the standard library's asyncore/asynchat on Python 3.11, whose import
# warns that they are deprecated; the warning is about pyftpdlib's internals, not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

REPO_ROOT = Path(__file__).resolve().parents[3]
CHARACTER_FILE = REPO_ROOT / "characters" / "fish.yaml"
TOKEN = "EAAG-integration-token-SECRET-7c1e"
FTP_USER = "carrier"
FTP_PASSWORD = "ftp-pass-SECRET-93ab"
ACCOUNT_ID = "17841400000000001"


ClientFactory = Callable[..., InstagramClient]
"""``make_client(llm=None, ssl_context=None, **instagram_settings)`` (the fixture)."""


def _load_media_samples() -> Any:
    # One set of sample builders for the unit and integration tests (no tests package).
    path = REPO_ROOT / "tests" / "unit" / "instagram" / "media_samples.py"
    spec = importlib.util.spec_from_file_location("instagram_media_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


samples = _load_media_samples()


class FakeClock:
    """Now, as the tests decide (shared by the client and the Graph API stand-in)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass(frozen=True)
class TlsFiles:
    """A private certificate authority and a server certificate it signed for 127.0.0.1
    and localhost (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Make a CA and a server certificate for 127.0.0.1 (valid for a day) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Carrier test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass
class FtpTestServer:
    """pyftpdlib on 127.0.0.1 in a thread.  ``drop_uploads = n`` drops the next n uploads
    after their first chunk of data (data and control connection closed).

    With ``tls`` it is an explicit FTPS server (``AUTH TLS``) that refuses to log anyone in
    before the control connection is encrypted and to open a data connection without
    ``PROT P``; it counts what was secured: ``secure_logins`` (USER/PASS arrived over TLS),
    ``protected_stores`` (``STOR`` under ``PROT P``) and ``tls_data_connections`` (data
    connections whose TLS handshake completed)."""

    root: Path
    tls: TlsFiles | None = None
    drop_uploads: int = 0
    dropped: int = 0
    received: list[str] = field(default_factory=list)
    logins: int = 0
    secure_logins: int = 0
    stores: int = 0
    protected_stores: int = 0
    tls_data_connections: int = 0
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FtpTestServer:
        state = self

        class DroppingDTPHandler(DTPHandler):  # type: ignore[misc]
            def handle_read(self) -> None:
                super().handle_read()
                if (
                    state.drop_uploads > 0
                    and self.receive
                    and self.tot_bytes_received > 0
                    and not self.transfer_finished
                ):
                    state.drop_uploads -= 1
                    state.dropped += 1
                    command = self.cmd_channel
                    self.close()
                    command.close()

            # The base class aliases handle_read_event to its own handle_read.
            handle_read_event = handle_read

        authorizer = DummyAuthorizer()
        authorizer.add_user(FTP_USER, FTP_PASSWORD, str(self.root), perm="elradfmwMT")

        class Handler(FTPHandler):  # type: ignore[misc]
            def on_login(self, username: str) -> None:
                state.logins += 1

            def on_file_received(self, file: str) -> None:
                state.received.append(Path(file).name)

        class TlsDTPHandler(TLS_DTPHandler):  # type: ignore[misc]
            def handle_ssl_established(self) -> None:
                state.tls_data_connections += 1

        class TlsHandler(TLS_FTPHandler):  # type: ignore[misc]
            tls_control_required = True  # USER/PASS only over an encrypted connection
            tls_data_required = True  # PASV/PORT only after PROT P

            def on_login(self, username: str) -> None:
                state.logins += 1
                state.secure_logins += bool(self._ssl_established)

            def ftp_STOR(self, file: str, mode: str = "w") -> Any:
                state.stores += 1
                state.protected_stores += bool(self._prot)
                return super().ftp_STOR(file, mode)

            def on_file_received(self, file: str) -> None:
                state.received.append(Path(file).name)

        handler: type[FTPHandler]
        if self.tls is None:
            handler = Handler
            handler.dtp_handler = DroppingDTPHandler
        else:
            handler = TlsHandler
            TlsHandler.certfile = str(self.tls.server_cert)
            TlsHandler.keyfile = str(self.tls.server_key)
            TlsHandler.dtp_handler = TlsDTPHandler
        handler.authorizer = authorizer
        handler.banner = "Carrier test FTP"
        handler.auth_failed_timeout = 0.05
        # An event loop of its own: by default every pyftpdlib server shares one, and two
        # servers (plain and TLS) would then serve, and close, each other's connections.
        server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
        self.port = int(server.address[1])

        def serve() -> None:
            while not self._stop.is_set():
                server.serve_forever(timeout=0.01, blocking=False, handle_exit=False)
            server.close_all()

        self._thread = threading.Thread(target=serve, name="test-ftpd", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def files(self, folder: str = "media") -> list[str]:
        return sorted(p.name for p in (self.root / folder).iterdir())


def instagram_settings(graph: FakeGraphAPI, **overrides: Any) -> InstagramSettings:
    values: dict[str, Any] = {
        "graph_api_url": graph.url,
        "ftp_folder": "media",
        "ftp_tls": False,
        "ftp_timeout_seconds": 5.0,
        "upload_attempts": 3,
        "poll_interval_seconds": 0.01,
        "poll_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return InstagramSettings(**values)


async def settle() -> None:
    """Let the FTP thread finish its bookkeeping (callbacks run after the reply is sent)."""
    await asyncio.sleep(0.05)
