"""Credentials come from the environment; a missing one is named, its value never shown."""

from __future__ import annotations

import pytest

from carrier.clients.instagram.credentials import (
    ALL_VARIABLES,
    MissingCredentials,
    load_credentials,
    parse_ftp_server,
)

TOKEN = "EAAGm0PX4ZCpsBA-secret-token-value"
PASSWORD = "ftp-Secret-pa55word"


def full_environment() -> dict[str, str]:
    return {
        "INSTAGRAM_ACCOUNT_ID": "17841400000000001",
        "INSTAGRAM_ACCESS_TOKEN": TOKEN,
        "FTP_SERVER": "ftp.example.org:2121",
        "FTP_USERNAME": "carrier",
        "FTP_PASSWORD": PASSWORD,
        "HTTP_SERVER": "https://media.example.org/instagram/",
    }


def test_all_credentials_are_read() -> None:
    credentials = load_credentials(full_environment())
    assert credentials.account_id == "17841400000000001"
    assert credentials.access_token.get_secret_value() == TOKEN
    assert (credentials.ftp_server.host, credentials.ftp_server.port) == ("ftp.example.org", 2121)
    assert credentials.ftp_username == "carrier"
    assert credentials.ftp_password.get_secret_value() == PASSWORD
    assert credentials.http_server == "https://media.example.org/instagram"
    assert TOKEN not in repr(credentials) and PASSWORD not in repr(credentials)
    assert credentials.secrets() == [TOKEN, PASSWORD]


@pytest.mark.parametrize("name", ALL_VARIABLES)
def test_a_missing_variable_is_named_without_any_value(name: str) -> None:
    environment = full_environment()
    environment[name] = "   "
    with pytest.raises(MissingCredentials) as caught:
        load_credentials(environment)
    message = str(caught.value)
    assert name in message
    assert caught.value.variables == (name,)
    for value in full_environment().values():
        assert value not in message


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(MissingCredentials) as caught:
        load_credentials({"FTP_PASSWORD": PASSWORD})
    assert set(caught.value.variables) == set(ALL_VARIABLES) - {"FTP_PASSWORD"}
    for name in caught.value.variables:
        assert name in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("INSTAGRAM_ACCOUNT_ID", "my-account", "numeric id"),
        ("FTP_SERVER", "ftp.example.org:notaport", "host name or host:port"),
        ("HTTP_SERVER", "ftp://media.example.org", "http:// or https://"),
    ],
)
def test_malformed_values_are_named_but_not_echoed(name: str, value: str, expected: str) -> None:
    environment = full_environment()
    environment[name] = value
    with pytest.raises(MissingCredentials, match=expected) as caught:
        load_credentials(environment)
    assert name in str(caught.value)
    assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("ftp.example.org", "ftp.example.org", 21),
        ("127.0.0.1:2121", "127.0.0.1", 2121),
        ("ftp://files.example.org:990", "files.example.org", 990),
    ],
)
def test_ftp_server_forms(text: str, host: str, port: int) -> None:
    server = parse_ftp_server(text)
    assert (server.host, server.port) == (host, port)
