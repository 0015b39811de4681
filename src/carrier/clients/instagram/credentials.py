"""The six credentials of the Instagram poster, read from the environment (or ``.env``).

They never live in ``config.yaml``.  A variable that is missing or empty raises
:class:`MissingCredentials`, whose message names every missing variable and never shows a
value.  The token and the FTP password are :class:`~pydantic.SecretStr`, so they do not
show in a repr or a log line either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from carrier.settings import ConfigError, environment_with_dotenv

ACCOUNT_ID = "INSTAGRAM_ACCOUNT_ID"
ACCESS_TOKEN = "INSTAGRAM_ACCESS_TOKEN"
FTP_SERVER = "FTP_SERVER"
FTP_USERNAME = "FTP_USERNAME"
FTP_PASSWORD = "FTP_PASSWORD"
HTTP_SERVER = "HTTP_SERVER"

GRAPH_VARIABLES = (ACCOUNT_ID, ACCESS_TOKEN)
UPLOAD_VARIABLES = (FTP_SERVER, FTP_USERNAME, FTP_PASSWORD, HTTP_SERVER)
ALL_VARIABLES = GRAPH_VARIABLES + UPLOAD_VARIABLES

_PURPOSE = {
    ACCOUNT_ID: "the Instagram professional account's id",
    ACCESS_TOKEN: "a Graph API user access token with instagram_content_publish",
    FTP_SERVER: "the FTP host, or host:port",
    FTP_USERNAME: "the FTP login",
    FTP_PASSWORD: "the FTP password",
    HTTP_SERVER: "the public http(s) URL that serves the FTP folder",
}


class MissingCredentials(ConfigError):
    """A credential is missing or malformed; the message names the variable(s), no value."""

    def __init__(self, message: str, variables: tuple[str, ...]) -> None:
        super().__init__(message)
        self.variables = variables


@dataclass(frozen=True, slots=True)
class FtpServer:
    host: str
    port: int = 21


@dataclass(frozen=True, slots=True)
class InstagramCredentials:
    account_id: str
    access_token: SecretStr
    ftp_server: FtpServer
    ftp_username: str
    ftp_password: SecretStr
    http_server: str
    """Base URL of the public web folder, without a trailing slash."""

    def secrets(self) -> list[str]:
        """The secret values, for log redaction and for tests that check none leaked."""
        return [self.access_token.get_secret_value(), self.ftp_password.get_secret_value()]


def load_credentials(environ: Mapping[str, str] | None = None) -> InstagramCredentials:
    """Read every credential from ``environ`` (default: the environment over ``.env``)."""
    env = environment_with_dotenv() if environ is None else environ
    values = {name: env.get(name, "").strip() for name in ALL_VARIABLES}
    missing = tuple(name for name in ALL_VARIABLES if not values[name])
    if missing:
        lines = [f"{name} ({_PURPOSE[name]})" for name in missing]
        raise MissingCredentials(
            "Instagram posting needs these environment variables (or .env entries), which "
            "are not set: " + "; ".join(lines),
            missing,
        )
    return InstagramCredentials(
        account_id=_account_id(values[ACCOUNT_ID]),
        access_token=SecretStr(values[ACCESS_TOKEN]),
        ftp_server=parse_ftp_server(values[FTP_SERVER]),
        ftp_username=values[FTP_USERNAME],
        ftp_password=SecretStr(values[FTP_PASSWORD]),
        http_server=_http_server(values[HTTP_SERVER]),
    )


def _account_id(value: str) -> str:
    if not value.isdigit():
        raise MissingCredentials(
            f"{ACCOUNT_ID} must be the numeric id of the Instagram professional account",
            (ACCOUNT_ID,),
        )
    return value


def parse_ftp_server(value: str) -> FtpServer:
    """``host``, ``host:port`` or ``ftp://host[:port]`` -> :class:`FtpServer`."""
    text = value if "://" in value else f"ftp://{value}"
    try:
        parts = urlsplit(text)
        port = parts.port or 21
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme not in ("ftp", "ftps") or not parts.hostname or not port:
        raise MissingCredentials(
            f"{FTP_SERVER} must be a host name or host:port, e.g. ftp.example.org:21",
            (FTP_SERVER,),
        )
    return FtpServer(parts.hostname, port)


def _http_server(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MissingCredentials(
            f"{HTTP_SERVER} must be an http:// or https:// URL, e.g. "
            "https://media.example.org/instagram",
            (HTTP_SERVER,),
        )
    return value.rstrip("/")
