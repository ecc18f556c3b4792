"""Certificates made at test time (trustme), written as PEM files the processes under test read."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.harness import ClientTLS

LOCAL = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files."""

    cert: Path
    key: Path


class Authority:
    """A test CA whose certificate is written to DIRECTORY/NAME.pem."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.ca = trustme.CA(organization_name=f"Conveyor test {name}")
        self.dir = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self.pem = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(self.pem)

    def issue(self, stem: str, *identities: str, common_name: str | None = None,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> Pair:
        """A leaf certificate for `identities` (default: 127.0.0.1 and localhost) at DIRECTORY/STEM.crt/.key."""
        leaf = self.ca.issue_cert(*(identities or LOCAL), common_name=common_name, not_before=not_before,
                                  not_after=not_after)
        pair = Pair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        write_atomically(pair.cert, b"".join(p.bytes() for p in leaf.cert_chain_pems))
        write_atomically(pair.key, leaf.private_key_pem.bytes())
        return pair

    def client(self, pair: Pair | None = None) -> ClientTLS:
        """What a client trusting this CA uses (presenting `pair`, for mutual TLS)."""
        return ClientTLS(self.pem, pair.cert if pair else None, pair.key if pair else None)


def write_atomically(path: Path, data: bytes) -> None:
    """Replaces `path` as a rotation tool should (write aside, then rename)."""
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def peer_certificate(port: int, ca: Path, host: str = "127.0.0.1", client: Pair | None = None) -> dict:
    """The certificate a new TLS connection to 127.0.0.1:port is served (Python's ssl, raw socket)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        return tls.getpeercert()  # type: ignore[return-value]


def serial_of(cert: dict) -> int:
    return int(cert["serialNumber"], 16)


def common_name(cert: dict) -> str:
    return next(value for rdn in cert["subject"] for key, value in rdn if key == "commonName")
