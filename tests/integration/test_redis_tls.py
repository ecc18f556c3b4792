"""A scheduler on a TLS-only redis-server (client certificates required) as an ACL user that holds
only redis_acl.COMMANDS, keys and channels cv:*: a real worker runs tasks end to end, the admin
calls, the beat, a workflow and /metrics all work, and Redis' ACL LOG stays empty."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
import redis

from conveyor import Client, TaskFailed, chord, signature
from conveyor_scheduler.redis_acl import acl_rule
from tests.harness import Cluster, RedisServer, connected, free_port, pings, spawn, wait_for
from tests.integration.test_metrics import scrape, value
from tests.tls_files import Authority, Pair

PASSWORD = "p@ss:w/rd"  # characters a URL must escape


@dataclass
class TLSRedis:
    server: RedisServer
    ca: Authority
    client: Pair
    admin: redis.Redis
    next_db: int = 0

    def url(self, user: str = "conveyor", password: str = PASSWORD) -> str:
        """A rediss:// URL of a fresh database, as the ACL user."""
        self.next_db += 1
        query = urlencode({"ssl_ca_certs": self.ca.pem, "ssl_certfile": self.client.cert,
                           "ssl_keyfile": self.client.key})
        return (f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.server.port}/"
                f"{self.next_db}?{query}")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    base = tmp_path_factory.mktemp("tls-redis")
    ca = Authority(base / "pki")
    served, client = ca.issue("redis"), ca.issue("scheduler", "conveyor-scheduler")
    port = free_port()
    server = RedisServer(base / "data", port=port).start(  # the harness's --port is overridden: TLS only
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(served.cert),
        "--tls-key-file", str(served.key), "--tls-ca-cert-file", str(ca.pem), "--tls-auth-clients", "yes",
        answering=False)
    admin = redis.Redis(port=server.port, ssl=True, ssl_ca_certs=str(ca.pem), ssl_certfile=str(client.cert),
                        ssl_keyfile=str(client.key))
    wait_for(lambda: pings(admin), 15, what="the TLS redis-server to answer")
    admin.execute_command(*acl_rule("conveyor", PASSWORD).split(" "))
    yield TLSRedis(server, ca, client, admin)
    admin.close()
    server.stop()



def test_scheduler_on_tls_redis_with_an_acl_user(cluster: Cluster, tls_redis: TLSRedis) -> None:
    tls_redis.admin.acl_log_reset()
    url = tls_redis.url()
    metrics = free_port()
    proc, target = cluster.scheduler(url, "--metrics-port", str(metrics), "--scheduler-id", "acl-1")
    connected(proc, cluster.worker(target, queues="acl"))
    connected(proc, cluster.worker(target, "tests.apps.lifecycle:app", queues="acl", name="life"))
    with Client(target) as client:
        assert [client.submit("t.add", [i, 1], queue="acl").result(timeout=30) for i in range(3)] == [1, 2, 3]
        with pytest.raises(TaskFailed):
            client.submit("life.always_fails", queue="acl", max_retries=1, retry_backoff=0).result(timeout=30)
        assert client.admin.list_dead_letters("acl").total == 1
        assert client.admin.requeue_dead_letters("acl") == 1
        wait_for(lambda: client.admin.list_dead_letters("acl").total == 1, what="the requeued task to fail again")
        assert client.admin.purge_dead_letters("acl") == 1
        client.admin.pause_queue("acl")
        parked = client.submit("t.add", [0, 0], queue="acl")
        assert {q.name for q in client.admin.queues()} >= {"acl"}
        assert client.admin.list_tasks("acl").tasks
        client.admin.resume_queue("acl")
        assert parked.result(timeout=30) == 0
        assert client.admin.list_workers()
        client.schedules.create("acl-tick", "t.add", [2, 2], every=0.5, queue="acl")
        before = len(client.admin.list_tasks("acl", states=["SUCCEEDED"]).tasks)
        wait_for(lambda: len(client.admin.list_tasks("acl", states=["SUCCEEDED"]).tasks) > before,
                 what="a scheduled firing to run")
        client.schedules.delete("acl-tick")
        # A workflow: its outboxes are read through a consumer group (XGROUP, XREADGROUP, XACK,
        # and XAUTOCLAIM in the sweep).
        canvas = chord([signature("t.add", [i, 1], queue="acl") for i in range(3)], signature("t.echo", queue="acl"))
        assert client.submit_workflow(canvas).result(timeout=30) == [1, 2, 3]
        assert client.admin.purge_queue("acl") >= 0
    wait_for(lambda: value(scrape(metrics), "conveyor_fleet_queue_tasks", queue="acl", state="queued") is not None,
             what="the fleet gauges (a sync redis-py client over TLS)")
    assert "NOPERM" not in proc.output() and "Traceback" not in proc.output(), proc.output()[-3000:]
    assert tls_redis.admin.acl_log() == []
    assert tls_redis.admin.client_list(_type="normal")  # everyone came over TLS: there is no plaintext port


def test_the_acl_user_holds_nothing_more(tls_redis: TLSRedis) -> None:
    user = redis.Redis.from_url(tls_redis.url())
    assert user.set("cv:probe", 1)
    for denied in (lambda: user.set("other", 1), lambda: user.keys("*"), user.flushdb,
                   lambda: user.config_get("dir"), lambda: user.publish("elsewhere", "x"),
                   lambda: user.eval("return 1", 0)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(tls_redis.url(password="wrong")).ping()
    tls_redis.admin.acl_log_reset()
    user.close()


def test_a_refused_password_stops_the_scheduler(cluster: Cluster, tls_redis: TLSRedis) -> None:
    """A scheduler whose password Redis refuses does not start serving (nothing runs unauthenticated)."""
    proc = spawn("scheduler", [sys.executable, "-m", "conveyor_scheduler", "--port", str(free_port()),
                               "--metrics-port", "0", "--redis-url", tls_redis.url(password="wrong")],
                 cluster.log_dir)
    cluster.procs.append(proc)
    assert proc.popen.wait(30) != 0
    assert "invalid username-password pair" in proc.output()
    assert "conveyor-scheduler listening on" not in proc.output()
    tls_redis.admin.acl_log_reset()
