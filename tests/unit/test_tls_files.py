"""tls.py's checks of the server's TLS files, the binding rule and the rediss:// TLS context (no processes)."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import click
import pytest
from cryptography import x509

from conveyor_scheduler.cli import _check_binding
from conveyor_scheduler.fast_redis import FastRedis, tls_context
from conveyor_scheduler.tls import (
    CertificateInfo,
    ServerCertificates,
    TLSFileError,
    _name_to_verify,
    expiry_notice,
    load_material,
)
from tests.tls_files import Authority

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def info(days: float) -> CertificateInfo:
    return CertificateInfo("CN=s", "CN=ca", 1, NOW + dt.timedelta(days=days))


def test_expiry_notices() -> None:
    assert expiry_notice(info(30), "TLS certificate", NOW) is None
    assert expiry_notice(info(14.5), "TLS certificate", NOW) is None
    assert "expires in 13.9 days" in (expiry_notice(info(13.9), "TLS certificate", NOW) or "")
    assert "has EXPIRED" in (expiry_notice(info(-1), "TLS certificate", NOW) or "")


def test_a_certificate_crossing_the_14_day_line_while_loaded_is_warned_once_per_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca = Authority(tmp_path)
    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).replace(microsecond=0)
    pair = ca.issue("soon", not_after=not_after)
    now = [not_after - dt.timedelta(days=14, seconds=60)]
    ticks = [0.0]
    with caplog.at_level(logging.WARNING, logger="conveyor_scheduler.tls"):
        certs = ServerCertificates(pair.cert, pair.key, ca.pem, clock=lambda: ticks[0], now=lambda: now[0])
        certs.check_expiry()
        assert not caplog.records and certs.expiring() == {"server": False, "client-ca": False}
        now[0] += dt.timedelta(seconds=61)  # a running scheduler: its certificate is now 13.99 days from expiry
        assert certs.expiring() == {"server": True, "client-ca": False}
        certs.check_expiry()
        certs.check_expiry()
        assert [r.getMessage()[:40] for r in caplog.records] == ["the TLS certificate expires in 14.0 days"]
        caplog.clear()
        ticks[0] += 1
        pair.cert.write_bytes(pair.cert.read_bytes())  # the same pair again: a new load, warned at load
        assert certs.refresh(force=True)
        certs.check_expiry()
        assert sum("expires in" in r.getMessage() for r in caplog.records) == 1


def test_a_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    one, two = ca.issue("one"), ca.issue("two")
    assert load_material(one.cert, one.key, ca.pem).client_ca is not None
    with pytest.raises(TLSFileError, match="does not match"):
        load_material(one.cert, two.key, None)
    with pytest.raises(TLSFileError, match="no unencrypted PEM private key"):
        load_material(one.cert, one.cert, None)
    with pytest.raises(TLSFileError, match="cannot read"):
        load_material(one.cert, tmp_path / "missing.key", None)


def test_refresh_keeps_the_old_pair_until_a_good_one_arrives(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    ca = Authority(tmp_path)
    live = ca.issue("live", common_name="first")
    now = [0.0]
    certs = ServerCertificates(live.cert, live.key, clock=lambda: now[0])
    certs.credentials()
    first = certs.material
    staged = ca.issue("staged", common_name="second")
    live.cert.write_bytes(staged.cert.read_bytes())
    assert not certs.refresh()  # looked at less than a second ago
    now[0] += 1
    with caplog.at_level(logging.ERROR):
        assert not certs.refresh()
    assert certs.material is first and "does not match" in caplog.text
    caplog.clear()
    now[0] += 1
    assert not certs.refresh() and not caplog.text  # the same bad files are not tried (nor logged) again
    assert certs._fetch() is None  # gRPC keeps serving what it has
    live.key.write_bytes(staged.key.read_bytes())
    now[0] += 1
    assert certs.refresh() and "CN=second" in certs.material.certificate.subject
    assert certs._fetch() is not None and certs._fetch() is None  # handed to gRPC once
    assert certs.refresh(force=True)  # SIGHUP re-reads even unchanged files


def test_health_check_name(tmp_path: Path) -> None:
    ca = Authority(tmp_path)

    def cert(*names: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(ca.issue("c", *names).cert.read_bytes())

    assert _name_to_verify(cert("127.0.0.1", "localhost"), "127.0.0.1") is None
    assert _name_to_verify(cert("scheduler", "scheduler.svc"), "127.0.0.1") == "scheduler"
    assert _name_to_verify(cert("*.example.com"), "127.0.0.1") == "check.example.com"
    assert _name_to_verify(cert("scheduler"), "scheduler") is None


def test_binding_rule() -> None:
    _check_binding("0.0.0.0", tls=True, auth=True, insecure=False)
    _check_binding("127.0.0.1", tls=False, auth=False, insecure=False)
    for tls, auth in ((False, False), (True, False), (False, True)):
        with pytest.raises(click.UsageError, match="--insecure"):
            _check_binding("0.0.0.0", tls=tls, auth=auth, insecure=False)
    _check_binding("0.0.0.0", tls=True, auth=False, insecure=True)


def test_rediss_url_context(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    client = ca.issue("client", "c")
    context = tls_context({"ssl_ca_certs": str(ca.pem), "ssl_certfile": str(client.cert),
                           "ssl_keyfile": str(client.key)})
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    lax = tls_context({"ssl_cert_reqs": "none"})
    assert lax.verify_mode == ssl.CERT_NONE and not lax.check_hostname
    assert not tls_context({"ssl_check_hostname": "false"}).check_hostname
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        tls_context({"ssl_cert_reqs": "maybe"})
    assert FastRedis.supports("rediss://u:p@h:6380/2")
    conn = FastRedis(f"rediss://conveyor:s%40cret@127.0.0.1:6380/3?ssl_ca_certs={ca.pem}")
    assert (conn._username, conn._password, conn._db, conn._port) == ("conveyor", "s@cret", 3, 6380)
    assert conn._ssl is not None
