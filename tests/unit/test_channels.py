"""conveyor.channels without a server: where settings come from, and what is refused before any
byte is sent (a plaintext token to a remote address, half a client certificate, unreadable files)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from conveyor import App, AsyncClient, Client, InsecureTokenError, TLSConfig, TLSConfigError
from conveyor.channels import (
    ChannelSecurity,
    is_loopback,
    open_aio_channel,
    open_channel,
    resolve_tls,
    resolve_token,
)
from conveyor.cli import main as conveyor_cli
from conveyor.errors import ChannelConfigError
from conveyor_worker.config import WorkerConfig
from conveyor_worker.worker import Worker

SECRET = "tok-9f2c"
ENV = {"CONVEYOR_TOKEN": "from-env", "CONVEYOR_TLS_CA": "/env/ca.pem"}


def test_arguments_win_over_the_environment() -> None:
    assert resolve_token(SECRET, ENV) == SECRET
    assert resolve_token(None, ENV) == "from-env"
    assert resolve_token("", ENV) is None, "an explicit empty token means none, whatever the environment says"
    assert resolve_token(None, {}) is None
    mine = TLSConfig(ca="/mine/ca.pem")
    assert resolve_tls(mine, ENV) is mine
    assert resolve_tls(None, ENV) == TLSConfig(ca="/env/ca.pem")
    assert resolve_tls(None, {}) is None


def test_an_explicit_tls_config_is_not_merged_with_the_environment() -> None:
    env = {"CONVEYOR_TLS_CERT": "/env/c.pem", "CONVEYOR_TLS_KEY": "/env/k.pem"}
    assert resolve_tls(TLSConfig(ca="/mine/ca.pem"), env) == TLSConfig(ca="/mine/ca.pem")


@pytest.mark.parametrize("env", [{"CONVEYOR_TLS_CA": "/ca.pem"},
                                 {"CONVEYOR_TLS_CERT": "/c.pem", "CONVEYOR_TLS_KEY": "/k.pem"}])
def test_any_tls_variable_means_tls(env: dict[str, str]) -> None:
    tls = resolve_tls(None, env)
    assert tls is not None
    assert tls.ca == env.get("CONVEYOR_TLS_CA")


def test_a_token_from_a_file_loses_its_newline() -> None:
    assert resolve_token(None, {"CONVEYOR_TOKEN": f"  {SECRET}\n"}) == SECRET


def test_a_token_that_is_not_printable_ascii_is_refused_without_showing_it() -> None:
    with pytest.raises(ChannelConfigError) as refused:
        resolve_token("bad\ntoken")
    assert "bad" not in str(refused.value)


@pytest.mark.parametrize(("cert", "key", "missing"), [("/c.pem", None, "key"), (None, "/k.pem", "cert")])
def test_a_client_certificate_needs_its_key(cert: str | None, key: str | None, missing: str) -> None:
    with pytest.raises(TLSConfigError, match=f"without its {missing}"):
        TLSConfig(ca="/ca.pem", cert=cert, key=key)
    env = {k: v for k, v in (("CONVEYOR_TLS_CERT", cert), ("CONVEYOR_TLS_KEY", key)) if v}
    with pytest.raises(TLSConfigError):
        resolve_tls(None, env)
    assert issubclass(TLSConfigError, ValueError)


@pytest.mark.parametrize("target", [
    "127.0.0.1:50051", "127.3.2.1:50051", "localhost:50051", "LOCALHOST:1", "[::1]:50051", "::1",
    "unix:/tmp/conveyor.sock", "unix:///tmp/conveyor.sock", "unix-abstract:conveyor", "dns:///localhost:50051",
    "ipv4:127.0.0.1:1", "127.0.0.1:1,localhost:2", "[::ffff:127.0.0.1]:1",
])
def test_loopback_targets(target: str) -> None:
    assert is_loopback(target)
    open_channel(target, token=SECRET, env={}).close()  # allowed: the token never leaves the machine


@pytest.mark.parametrize("target", [
    "10.0.0.5:50051", "scheduler:50051", "scheduler.example.com:50051", "localhost.evil.example:1",
    "[2001:db8::1]:50051", "0.0.0.0:50051", "dns:///scheduler:50051", "dns://8.8.8.8/localhost.example:1",
    "ipv4:10.0.0.1:1", "127.0.0.1:50051,10.0.0.5:50051", "",
])
def test_a_token_is_never_sent_in_plaintext_to_a_remote_target(target: str) -> None:
    assert not is_loopback(target)
    with pytest.raises(InsecureTokenError) as refused:
        open_channel(target, token=SECRET, env={})
    message = str(refused.value)
    assert "plaintext" in message and "TLS" in message and SECRET not in message
    assert isinstance(refused.value, ValueError)
    with pytest.raises(InsecureTokenError):
        open_aio_channel(target, token=SECRET, env={})
    with pytest.raises(InsecureTokenError):  # a token from the environment is held to the same rule
        open_channel(target, env={"CONVEYOR_TOKEN": SECRET})


def test_remote_targets_are_fine_without_a_token_or_with_tls(tmp_path: Path) -> None:
    open_channel("10.0.0.5:50051", env={}).close()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    open_channel("10.0.0.5:50051", tls=TLSConfig(ca=ca), token=SECRET, env={}).close()
    open_channel("10.0.0.5:50051", tls=TLSConfig(), token=SECRET, env={}).close()  # the system roots


def test_clients_refuse_a_plaintext_token_to_a_remote_target() -> None:
    with pytest.raises(InsecureTokenError):
        Client("10.0.0.5:50051", token=SECRET)
    with pytest.raises(InsecureTokenError):
        AsyncClient("10.0.0.5:50051", token=SECRET)


def test_tls_files_are_read_when_a_channel_opens(tmp_path: Path) -> None:
    tls = TLSConfig(ca=tmp_path / "missing-ca.pem")  # made without touching the file
    with pytest.raises(TLSConfigError, match=r"missing-ca\.pem"):
        open_channel("127.0.0.1:1", tls=tls, env={})


def test_a_given_channel_takes_no_tls_or_token() -> None:
    with grpc.insecure_channel("127.0.0.1:1") as channel, pytest.raises(ValueError, match="channel="):
        Client(channel=channel, token=SECRET)


def test_the_token_is_never_in_a_repr() -> None:
    assert SECRET not in repr(ChannelSecurity.resolve("127.0.0.1:1", None, SECRET, env={}))
    assert SECRET not in repr(WorkerConfig(token=SECRET))


def test_the_cli_passes_its_options_to_the_client() -> None:
    result = CliRunner().invoke(conveyor_cli, ["--scheduler", "10.0.0.5:50051", "--token", SECRET, "queues"], env={
        "CONVEYOR_TLS_CA": None, "CONVEYOR_TLS_CERT": None, "CONVEYOR_TLS_KEY": None})
    assert isinstance(result.exception, InsecureTokenError)
    result = CliRunner().invoke(conveyor_cli, ["--scheduler", "10.0.0.5:50051", "queues"], env={
        "CONVEYOR_TOKEN": SECRET, "CONVEYOR_TLS_CA": None, "CONVEYOR_TLS_CERT": None, "CONVEYOR_TLS_KEY": None})
    assert isinstance(result.exception, InsecureTokenError), "CONVEYOR_TOKEN is the --token option's variable"


def test_the_cli_refuses_a_client_certificate_without_its_key() -> None:
    result = CliRunner().invoke(conveyor_cli, ["--tls-cert", "/c.pem", "queues"])
    assert result.exit_code == 2
    assert "without its key" in result.output


def test_a_worker_retries_a_channel_it_cannot_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A TLS file missing (mid-rotation, say) is retried with the reconnect backoff, and does not
    end the worker's run loop."""
    config = WorkerConfig(targets=("127.0.0.1:1",), tls=TLSConfig(ca=tmp_path / "ca.pem"), reconnect_max_backoff=0.05)

    async def run() -> None:
        worker = Worker(App("t"), config)
        runner = asyncio.create_task(worker.run())
        while sum("cannot open a channel" in r.getMessage() for r in caplog.records) < 3:
            assert not runner.done(), runner
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(runner, 10)

    with caplog.at_level(logging.ERROR, logger="conveyor_worker.stream"):
        asyncio.run(asyncio.wait_for(run(), 20))
    assert "ca.pem" in caplog.text
