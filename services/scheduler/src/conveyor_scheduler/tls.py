"""The scheduler's TLS files, served through gRPC and re-read when they change.

`ServerCertificates` reads the certificate chain, key and (for mutual TLS) client CA from
PEM files, checks them (the key must match the certificate: a rotation caught between
writing one and the other is refused, and the pair loaded before keeps being served), logs
what it loaded and warns when the certificate expires soon: at load, and when a running
scheduler's certificate crosses the line (`check_expiry`, from the once-a-second file watcher),
at most once per certificate per load; `expiring()` says the same for /metrics. `credentials()` gives gRPC a
certificate-configuration fetcher (`grpc.dynamic_ssl_server_credentials`): gRPC calls it
before each new connection's handshake, so a rotated pair is served to new connections
while open ones keep theirs. The files are looked at at most once per `check_interval`
(`refresh(force=True)`, on SIGHUP, looks at once).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conveyor_scheduler.file_stamps import stamp

log = logging.getLogger(__name__)

EXPIRY_WARNING_DAYS = 14
"""A certificate that expires within this many days is warned about (at load, or when it gets
there while loaded) and shown as expiring on /metrics."""
CHECK_INTERVAL_S = 1.0


class TLSFileError(Exception):
    """The TLS files cannot be read, or do not belong together."""


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the logs and /metrics say about a certificate."""

    subject: str
    issuer: str
    serial: int
    not_after: dt.datetime

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateInfo:
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.serial_number,
                   cert.not_valid_after_utc)

    def describe(self) -> str:
        return (f"subject {self.subject or '(empty)'}, issuer {self.issuer or '(empty)'}, "
                f"not after {self.not_after.isoformat()}, serial {self.serial:x}")


@dataclass(frozen=True, slots=True)
class ServerMaterial:
    """One checked set of server TLS files."""

    key_pem: bytes
    chain_pem: bytes
    client_ca_pem: bytes | None
    certificate: CertificateInfo
    client_ca: CertificateInfo | None
    """The client CA bundle's certificate that expires first."""

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key_pem, self.chain_pem)], self.client_ca_pem)


def load_material(cert: Path, key: Path, client_ca: Path | None) -> ServerMaterial:
    """Reads and checks the files (TLSFileError says what is wrong, never a key's content)."""
    try:
        chain_pem, key_pem = cert.read_bytes(), key.read_bytes()
        ca_pem = client_ca.read_bytes() if client_ca is not None else None
    except OSError as exc:
        raise TLSFileError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise TLSFileError(f"{cert} holds no PEM certificate: {exc}") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
        raise TLSFileError(f"{key} holds no unencrypted PEM private key: {type(exc).__name__}") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise TLSFileError(f"the key in {key} does not match the certificate in {cert}")
    ca_info = None
    if ca_pem is not None:
        try:
            cas = x509.load_pem_x509_certificates(ca_pem)
        except ValueError as exc:
            raise TLSFileError(f"{client_ca} holds no PEM certificate: {exc}") from None
        ca_info = CertificateInfo.of(min(cas, key=lambda c: c.not_valid_after_utc))
    return ServerMaterial(key_pem, chain_pem, ca_pem, CertificateInfo.of(chain[0]), ca_info)


def expiry_notice(info: CertificateInfo, what: str, now: dt.datetime) -> str | None:
    """A warning when `info` expires within EXPIRY_WARNING_DAYS (or has expired), else None."""
    left = info.not_after - now
    if left <= dt.timedelta(0):
        return f"the {what} has EXPIRED (not after {info.not_after.isoformat()}): {info.subject}"
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return (f"the {what} expires in {left.total_seconds() / 86400:.1f} days "
                f"(not after {info.not_after.isoformat()}): {info.subject}; rotate it")
    return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _certificates(material: ServerMaterial) -> dict[str, tuple[CertificateInfo, str]]:
    """The material's certificates by their /metrics name, with how the log names them."""
    out = {"server": (material.certificate, "TLS certificate")}
    if material.client_ca is not None:
        out["client-ca"] = (material.client_ca, "TLS client CA")
    return out


class ServerCertificates:
    """The server's certificate, key and client CA, kept current with their files."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None, *,
                 check_interval: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], dt.datetime] = _utc_now) -> None:
        self.paths = (cert, key, client_ca)
        self.check_interval = check_interval
        self.clock = clock
        self.now = now
        """Wall-clock time, for expiry (`clock` only paces the file checks)."""
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._refused: tuple[object, ...] | None = None
        """The stamps of files that failed to load: not tried again until they change."""
        self._checked = clock()
        self._warned: tuple[ServerMaterial | None, set[str]] = (None, set())
        """The load whose expiry warnings were logged, and which of its certificates were."""
        self.material = load_material(cert, key, client_ca)  # start-up: a bad set stops the scheduler
        self._served: ServerMaterial | None = None
        self._report(self.material)

    @property
    def mutual(self) -> bool:
        return self.paths[2] is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose fetcher serves the current material to each new connection."""
        self._served = self.material
        return grpc.dynamic_ssl_server_credentials(self.material.configuration(), self._fetch,
                                                   require_client_authentication=self.mutual)

    def refresh(self, force: bool = False) -> bool:
        """Re-reads the files if they changed (looking at most once per check_interval unless
        forced); True when a new set was loaded. A set that fails to load is logged and the
        current one kept."""
        with self._lock:
            now = self.clock()
            if not force and now - self._checked < self.check_interval:
                return False
            self._checked = now
            stamp = self._stamps()
            if not force and stamp in (self._stamp, self._refused):
                return False
            try:
                material = load_material(*self.paths)
            except TLSFileError as exc:
                self._refused = stamp
                log.error("TLS files not reloaded, still serving the certificate loaded before (%s): %s",
                          self.material.certificate.subject, exc)
                return False
            self._stamp, self._refused, self.material = stamp, None, material
        log.info("TLS files changed: reloaded")
        self._report(material)
        return True

    def expiry(self) -> dict[str, float]:
        """Not-after times (Unix seconds) of the server certificate and, with mTLS, the client CA."""
        return {name: info.not_after.timestamp() for name, (info, _) in _certificates(self.material).items()}

    def expiring(self) -> dict[str, bool]:
        """Per certificate ("server", "client-ca"): whether it expires within EXPIRY_WARNING_DAYS
        (or has expired), for /metrics."""
        now = self.now()
        return {name: expiry_notice(info, what, now) is not None
                for name, (info, what) in _certificates(self.material).items()}

    def check_expiry(self) -> None:
        """Logs the warning for a loaded certificate that has come within EXPIRY_WARNING_DAYS since
        it was loaded (the file watcher calls this every second): once per certificate and load."""
        self._warn_expiry(self.material)

    def _warn_expiry(self, material: ServerMaterial) -> None:
        now = self.now()
        with self._lock:
            loaded, warned = self._warned
            if loaded is not material:
                warned = set()
                self._warned = (material, warned)
            notices = []
            for name, (info, what) in _certificates(material).items():
                notice = expiry_notice(info, what, now) if name not in warned else None
                if notice:
                    warned.add(name)
                    notices.append(notice)
        for notice in notices:
            log.warning("%s", notice)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher (called on its own threads before a handshake): None keeps the current set."""
        try:
            self.refresh()
            material = self.material
            if material is self._served:
                return None
            self._served = material
            return material.configuration()
        except Exception:  # an exception here would fail the handshake: keep serving what we have
            log.exception("TLS certificate fetcher failed; serving the current certificate")
            return None

    def _stamps(self) -> tuple[object, ...]:
        return tuple(stamp(p) if p is not None else "unset" for p in self.paths)

    def _report(self, material: ServerMaterial) -> None:
        log.info("TLS certificate loaded: %s", material.certificate.describe())
        if material.client_ca is not None:
            log.info("TLS client CA loaded (client certificates required): %s", material.client_ca.describe())
        self._warn_expiry(material)


# -- the client side of `conveyor-scheduler --check` --------------------------------------------

def check_channel(host: str, port: int, server_cert: Path) -> grpc.Channel:
    """A TLS channel to this host's scheduler for a health check: it trusts CONVEYOR_TLS_CA (else
    the system roots), presents CONVEYOR_TLS_CERT/CONVEYOR_TLS_KEY when set (mutual TLS), and,
    when the scheduler's certificate (`server_cert`, read from its file) does not name `host`,
    verifies it against the first DNS name it does hold (a container checks itself on 127.0.0.1
    with a certificate made out to its service name)."""
    env = os.environ
    ca, cert, key = (env.get(f"CONVEYOR_TLS_{n}") for n in ("CA", "CERT", "KEY"))
    if bool(cert) != bool(key):
        raise TLSFileError("CONVEYOR_TLS_CERT and CONVEYOR_TLS_KEY go together")
    try:
        creds = grpc.ssl_channel_credentials(Path(ca).read_bytes() if ca else None,
                                             Path(key).read_bytes() if key else None,
                                             Path(cert).read_bytes() if cert else None)
        served = x509.load_pem_x509_certificates(server_cert.read_bytes())[0]
    except (OSError, ValueError) as exc:
        raise TLSFileError(str(exc)) from None
    options = []
    name = _name_to_verify(served, host)
    if name is not None:
        options.append(("grpc.ssl_target_name_override", name))
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return grpc.secure_channel(target, creds, options=options)


def _name_to_verify(cert: x509.Certificate, host: str) -> str | None:
    """None when `cert` is made out to `host`, else the first DNS name it holds (if any)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    try:
        if ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress):
            return None
    except ValueError:
        pass
    dns = names.get_values_for_type(x509.DNSName)
    if host in dns or not dns:
        return None
    return dns[0].replace("*", "check", 1)
