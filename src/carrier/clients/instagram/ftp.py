"""Uploading a media file by FTP into the folder that ``HTTP_SERVER`` serves.

Instagram does not take the file itself: it downloads it from a public URL.  The file goes
by FTP (explicit TLS, ``AUTH TLS``, when ``instagram.ftp_tls`` is on) into
``instagram.ftp_folder``, and its public URL is ``HTTP_SERVER/<remote name>``.

Retries never create a second file:

* the remote name is derived from the content (``<sha256 prefix>.<ext>``), so the same file
  always lands under the same name;
* the bytes go to ``<name>.part`` first and are renamed to ``<name>`` only when complete, so
  the public name never shows a half-written file, and a retry overwrites the same ``.part``;
* a file already present under the final name with the expected size is not sent again.

Dropped connections, timeouts and temporary (4xx) replies are retried with exponential
backoff; permanent (5xx) replies such as a refused login fail at once.  Messages name the
server and the user, never the password.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from pydantic import SecretStr

from carrier.clients.instagram.credentials import FtpServer
from carrier.clients.instagram.validation import MediaFile

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
_RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ftplib.error_temp,
    ftplib.error_reply,
    ftplib.error_proto,
)
_NAME_HASH_CHARS = 32


class UploadFailed(Exception):
    """The file could not be uploaded; the message says where and why (no password).
    ``permanent`` when the server refused (a 5xx reply: login, permissions), so retrying
    the same way cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def remote_name(media: MediaFile) -> str:
    """The name a file gets on the server: the same content always gets the same name."""
    return f"{media.sha256[:_NAME_HASH_CHARS]}{media.extension}"


def public_url(http_server: str, name: str) -> str:
    """Where Instagram downloads ``name`` from."""
    return f"{http_server.rstrip('/')}/{quote(name)}"


class FtpUploader:
    """Uploads files to one FTP server; blocking ftplib calls run in a worker thread."""

    def __init__(
        self,
        server: FtpServer,
        username: str,
        password: SecretStr,
        *,
        folder: str = "",
        tls: bool = True,
        timeout: float = 60.0,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._server = server
        self._username = username
        self._password = password
        self._folder = folder.strip()
        self._tls = tls
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._ssl_context = ssl_context
        self._sleep = sleep

    @property
    def target(self) -> str:
        """``user@host:port/folder`` for messages (no password)."""
        folder = f"/{self._folder.strip('/')}" if self._folder else ""
        return f"{self._username}@{self._server.host}:{self._server.port}{folder}"

    async def upload(self, media: MediaFile) -> str:
        """Upload ``media`` (retrying dropped connections); return its remote name."""
        name = remote_name(media)
        for attempt in range(1, self._attempts + 1):
            try:
                sent = await asyncio.to_thread(
                    self._upload_once, media.path, name, media.size_bytes
                )
            except ftplib.error_perm as exc:
                raise UploadFailed(
                    f"FTP upload of {media.path.name} to {self.target} was refused: "
                    f"{self._scrub(exc)}",
                    permanent=True,
                ) from None
            except ssl.SSLCertVerificationError as exc:
                raise UploadFailed(
                    f"FTP server {self._server.host}:{self._server.port} presented a TLS "
                    f"certificate that cannot be verified: {exc.verify_message or exc}",
                    permanent=True,
                ) from None
            except _RETRYABLE as exc:
                if attempt == self._attempts:
                    raise UploadFailed(
                        f"FTP upload of {media.path.name} to {self.target} failed after "
                        f"{attempt} tries: {self._describe(exc)}"
                    ) from None
                pause = self._backoff * 2 ** (attempt - 1)
                log.warning(
                    "FTP upload of %s to %s failed (%s); try %d of %d in %.1f s",
                    media.path.name,
                    self.target,
                    self._describe(exc),
                    attempt + 1,
                    self._attempts,
                    pause,
                )
                await self._sleep(pause)
                continue
            log.info(
                "%s %s to %s as %s",
                "uploaded" if sent else "already on the server:",
                media.path.name,
                self.target,
                name,
            )
            return name
        raise AssertionError("unreachable")  # pragma: no cover

    # -- blocking part, in a worker thread ---------------------------------------------------

    def _connect(self) -> ftplib.FTP:
        if self._tls:
            context = self._ssl_context or ssl.create_default_context()
            ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=self._timeout)
        else:
            ftp = ftplib.FTP(timeout=self._timeout)
        ftp.connect(self._server.host, self._server.port)
        return ftp

    def _upload_once(self, path: Path, name: str, size: int) -> bool:
        """One connection: log in, enter the folder, send unless already there.  Returns
        whether bytes were sent."""
        ftp = self._connect()
        try:
            ftp.login(self._username, self._password.get_secret_value())
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()  # the data connection is encrypted too
            self._enter_folder(ftp)
            ftp.voidcmd("TYPE I")
            if self._remote_size(ftp, name) == size:
                ftp.quit()
                return False
            partial = f"{name}.part"
            with path.open("rb") as handle:
                ftp.storbinary(f"STOR {partial}", handle)
            self._replace(ftp, partial, name)
            if self._remote_size(ftp, name) != size:
                raise ftplib.error_temp(f"451 {name} has the wrong size after the upload")
            ftp.quit()
            return True
        finally:
            ftp.close()

    def _enter_folder(self, ftp: ftplib.FTP) -> None:
        if not self._folder:
            return
        if self._folder.startswith("/"):
            ftp.cwd("/")
        for part in (p for p in self._folder.split("/") if p):
            try:
                ftp.cwd(part)
            except ftplib.error_perm:
                ftp.mkd(part)
                ftp.cwd(part)

    @staticmethod
    def _remote_size(ftp: ftplib.FTP, name: str) -> int | None:
        try:
            return ftp.size(name)
        except ftplib.error_perm:
            return None

    @staticmethod
    def _replace(ftp: ftplib.FTP, source: str, target: str) -> None:
        try:
            ftp.rename(source, target)
        except ftplib.error_perm:
            # Some servers refuse to rename over an existing file.
            ftp.delete(target)
            ftp.rename(source, target)

    def _describe(self, exc: BaseException) -> str:
        text = self._scrub(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        secret = self._password.get_secret_value()
        return text.replace(secret, "***") if secret else text
