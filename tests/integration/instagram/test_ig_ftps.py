"""Explicit FTPS for real: pyftpdlib's TLS server on loopback with a certificate made for the
test.  The server refuses USER/PASS before ``AUTH TLS`` and data connections without
``PROT P``, so an upload that succeeds proves the password and the file went encrypted."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from ig_support import (
    FTP_PASSWORD,
    FTP_USER,
    ClientFactory,
    FtpTestServer,
    TlsFiles,
    make_tls_files,
    samples,
    settle,
)
from pydantic import SecretStr

from carrier.clients.instagram.credentials import FtpServer
from carrier.clients.instagram.ftp import FtpUploader, UploadFailed, remote_name
from carrier.clients.instagram.validation import file_sha256, inspect_media
from carrier.store.store import Store
from carrier.testing.graph_api import FakeGraphAPI


def trusting(tls: TlsFiles) -> ssl.SSLContext:
    """The default context (certificate and host name checked) trusting the test CA."""
    return ssl.create_default_context(cafile=str(tls.ca_cert))


def uploader_for(
    server: FtpTestServer, *, ssl_context: ssl.SSLContext | None, attempts: int = 3
) -> FtpUploader:
    return FtpUploader(
        FtpServer("127.0.0.1", server.port),
        FTP_USER,
        SecretStr(FTP_PASSWORD),
        folder="media",
        tls=True,
        timeout=5.0,
        attempts=attempts,
        backoff_seconds=0.01,
        ssl_context=ssl_context,
    )


async def test_explicit_tls_uploads_with_a_verified_certificate_and_protected_data(
    make_client: ClientFactory,
    environ: dict[str, str],
    ftp_server: FtpTestServer,
    ftps_server: FtpTestServer,
    tls_files: TlsFiles,
    graph: FakeGraphAPI,
    media_dir: Path,
) -> None:
    environ["FTP_SERVER"] = f"127.0.0.1:{ftps_server.port}"
    photo = samples.jpeg(media_dir / "secure.jpg", seed=3)
    context = trusting(tls_files)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    client = make_client(ftp_tls=True, ssl_context=context)

    outcome = await client.post(photo, caption="over TLS")
    await settle()

    assert outcome.published
    sha = file_sha256(photo)
    assert ftps_server.files() == [f"{sha[:32]}.jpg"]
    assert graph.containers[outcome.post.container_id or ""].fetched_sha256 == sha
    # The server let the client in only over TLS, and saw every STOR under PROT P on a data
    # connection whose TLS handshake completed.
    assert ftps_server.logins == ftps_server.secure_logins == 1
    assert ftps_server.stores == ftps_server.protected_stores == 1
    assert ftps_server.tls_data_connections >= 1
    assert ftp_server.logins == 0  # the plain server on the same folder was never used


async def test_the_tls_server_refuses_a_client_that_logs_in_in_the_clear(
    make_client: ClientFactory,
    environ: dict[str, str],
    ftps_server: FtpTestServer,
    graph: FakeGraphAPI,
    media_dir: Path,
) -> None:
    """The check behind the test above: without TLS this server logs nobody in."""
    environ["FTP_SERVER"] = f"127.0.0.1:{ftps_server.port}"
    outcome = await make_client(ftp_tls=False).post(samples.jpeg(media_dir / "a.jpg"), caption="x")
    await settle()

    assert outcome.post.status == "failed"
    error = outcome.post.error or ""
    assert "refused" in error and "TLS required" in error
    assert FTP_PASSWORD not in error
    assert ftps_server.logins == 0 and ftps_server.files() == []
    assert graph.requests_to("media") == []


async def test_an_untrusted_certificate_fails_at_once_naming_the_server(
    ftps_server: FtpTestServer, media_dir: Path
) -> None:
    media = inspect_media(samples.jpeg(media_dir / "a.jpg"))
    # No ssl_context: the production default, which trusts the system's CAs only.
    uploader = uploader_for(ftps_server, ssl_context=None)

    with pytest.raises(UploadFailed) as caught:
        await uploader.upload(media)
    await settle()

    message = str(caught.value)
    assert f"FTP server 127.0.0.1:{ftps_server.port}" in message
    assert "certificate" in message and "verif" in message
    assert FTP_PASSWORD not in message
    assert caught.value.permanent  # not retried: another try cannot make it trusted
    assert ftps_server.logins == 0  # the handshake failed before USER/PASS were sent
    assert ftps_server.files() == []


async def test_a_certificate_from_another_ca_is_refused_too(
    ftps_server: FtpTestServer, media_dir: Path, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path / "other-ca")
    uploader = uploader_for(ftps_server, ssl_context=trusting(other))
    with pytest.raises(UploadFailed, match=r"certificate that cannot be verified"):
        await uploader.upload(inspect_media(samples.jpeg(media_dir / "a.jpg")))
    await settle()
    assert ftps_server.logins == 0 and ftps_server.files() == []


async def test_the_poster_records_an_untrusted_certificate_without_the_password(
    make_client: ClientFactory,
    environ: dict[str, str],
    ftps_server: FtpTestServer,
    graph: FakeGraphAPI,
    store: Store,
    media_dir: Path,
) -> None:
    environ["FTP_SERVER"] = f"127.0.0.1:{ftps_server.port}"
    outcome = await make_client(ftp_tls=True).post(
        samples.jpeg(media_dir / "a.jpg"), caption="untrusted"
    )
    await settle()

    post = outcome.post
    assert post.status == "failed"
    error = post.error or ""
    assert f"127.0.0.1:{ftps_server.port}" in error and "certificate" in error
    assert FTP_PASSWORD not in error
    (attempt,) = await store.instagram.attempts(post.id)
    assert (attempt.stage, attempt.outcome) == ("upload", "failed")
    assert FTP_PASSWORD not in (attempt.error or "")
    assert graph.requests_to("media") == []  # no container for a file that is not there
    assert ftps_server.logins == 0


async def test_a_tls_upload_that_is_already_there_is_not_sent_again(
    ftps_server: FtpTestServer, tls_files: TlsFiles, media_dir: Path
) -> None:
    media = inspect_media(samples.jpeg(media_dir / "a.jpg"))
    uploader = uploader_for(ftps_server, ssl_context=trusting(tls_files))

    assert await uploader.upload(media) == remote_name(media)
    assert await uploader.upload(media) == remote_name(media)
    await settle()

    assert ftps_server.files() == [remote_name(media)]
    assert ftps_server.stores == ftps_server.protected_stores == 1  # the second one skipped
    assert ftps_server.logins == ftps_server.secure_logins == 2
