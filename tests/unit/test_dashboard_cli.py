"""`conveyor-dashboard`'s TLS toward the schedulers: flags, the old --tls-ca, CONVEYOR_TLS_* defaults."""

from __future__ import annotations

import pytest

from conveyor.channels import TLSConfig
from conveyor_dashboard.cli import parse, scheduler_tls, settings_of


def test_scheduler_flags_give_the_client_certificate_and_the_https_pair_is_not_used() -> None:
    args = parse(["--scheduler-tls-ca", "ca.pem", "--scheduler-tls-cert", "c.pem", "--scheduler-tls-key", "k.pem",
                  "--tls-cert", "web.pem", "--tls-key", "web-key.pem"])
    assert scheduler_tls(args, {}) == TLSConfig("ca.pem", "c.pem", "k.pem")


def test_each_flag_defaults_to_its_variable_and_tls_ca_still_names_the_ca() -> None:
    env = {"CONVEYOR_TLS_CA": "env-ca.pem", "CONVEYOR_TLS_CERT": "env-c.pem", "CONVEYOR_TLS_KEY": "env-k.pem"}
    assert scheduler_tls(parse([]), env) == TLSConfig("env-ca.pem", "env-c.pem", "env-k.pem")
    assert scheduler_tls(parse(["--tls-ca", "old.pem"]), env) == TLSConfig("old.pem", "env-c.pem", "env-k.pem")
    assert scheduler_tls(parse(["--tls-ca", "old.pem"]), {}) == TLSConfig("old.pem")
    assert scheduler_tls(parse([]), {}) is None


def test_a_half_pair_or_two_different_cas_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="mutual TLS needs both"):
        scheduler_tls(parse(["--scheduler-tls-cert", "c.pem"]), {})
    with pytest.raises(SystemExit, match="name different CAs"):
        scheduler_tls(parse(["--tls-ca", "a.pem", "--scheduler-tls-ca", "b.pem"]), {})
    for name in ("CONVEYOR_TLS_CA", "CONVEYOR_TLS_CERT", "CONVEYOR_TLS_KEY", "CONVEYOR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert settings_of(parse(["--scheduler-tls-ca", "ca.pem"])).tls == TLSConfig("ca.pem")
