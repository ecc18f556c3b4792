"""`make certs`: a private CA, certificates, tokens and a Redis ACL for running compose.yaml over TLS.

    .venv/bin/python scripts/make_certs.py [--out deploy/certs] [--days 365] [--force]

Writes into --out (kept out of git):
- ca.pem (+ ca-key.pem, host only): the private certificate authority that signs the rest;
- scheduler.pem / scheduler-key.pem: the schedulers' server certificate (names: scheduler-1,
  scheduler-2, scheduler, localhost, 127.0.0.1, ::1), also their client certificate to Redis;
- redis.pem / redis-key.pem: Redis' server certificate (name: redis);
- dashboard.pem / dashboard-key.pem: the dashboard's HTTPS certificate (names: dashboard,
  localhost, 127.0.0.1; browsers warn until ca.pem is trusted);
- client.pem / client-key.pem: a client certificate (CN=conveyor-client), for mutual TLS and
  for Redis' health check;
- tokens.toml: the schedulers' --auth-file, one [[token]] per role (sha256 digests only), and
  ROLE.env (worker.env, producer.env, reader.env, admin.env, dashboard.env: a reader): CONVEYOR_TOKEN=<its secret>, for
  compose's env_file and for `set -a; . deploy/certs/admin.env` on the host;
- redis-users.acl: Redis' ACL file, the user `conveyor` with the least rights the scheduler needs
  (conveyor_scheduler.redis_acl) and a password kept as its sha256 only, and the default user
  allowed nothing but PING (for health checks); scheduler.env: CONVEYOR_REDIS_URL, the
  rediss:// URL with that user's password and the scheduler's certificate.
Existing files are kept unless --force: rotating means running it again with --force; the
schedulers re-read their certificate and token files when they change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conveyor.cli_token import entry, new_token
from conveyor_scheduler.redis_acl import acl_file_line

ROLES = {"worker": ["worker"], "admin": ["admin"], "producer": ["producer"], "reader": ["reader"],
         "dashboard": ["reader"]}
"""Token name -> roles: one token per kind of client compose.yaml runs or the README uses (the
dashboard's own token lets visitors look without signing in; they sign in with theirs to act)."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def make_ca(days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conveyor private CA")])
    cert = (_builder("Conveyor private CA", name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common_name: str, names: list[str],
              days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for both ends of a connection (server and client auth) with these DNS/IP names."""
    key = _key()
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    builder = (_builder(common_name, ca.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("deploy/certs"))
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args()
    out: Path = args.out
    if (out / "ca.pem").exists() and not args.force:
        print(f"{out}/ca.pem exists: keeping what is there (--force makes new ones)")
        return
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes, host_only: bool = False) -> None:
        """Files the containers read are world-readable: compose bind-mounts this folder into
        containers that run as their own users (conveyor 10001, redis 999). Outside this demo,
        give each key to its own service only. The env files are read by compose on the host."""
        path = out / name
        path.write_bytes(data)
        path.chmod(0o600 if host_only else 0o644)

    ca_key, ca = make_ca(args.days)
    write("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    write("ca-key.pem", _pem_key(ca_key), host_only=True)
    leaves = {
        "scheduler": ("scheduler", ["scheduler-1", "scheduler-2", "scheduler", "localhost", "127.0.0.1", "::1"]),
        "redis": ("redis", ["redis", "localhost", "127.0.0.1"]),
        "dashboard": ("dashboard", ["dashboard", "localhost", "127.0.0.1"]),
        "client": ("conveyor-client", []),
    }
    for file, (cn, names) in leaves.items():
        key, cert = make_leaf(ca_key, ca, cn, names, args.days)
        write(f"{file}.pem", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{file}-key.pem", _pem_key(key))
    toml = ["# Conveyor --auth-file, written by scripts/make_certs.py: digests only, never secrets."]
    for name, roles in ROLES.items():
        secret = new_token()
        toml += ["", entry(name, secret, roles, None)]
        write(f"{name}.env", f"CONVEYOR_TOKEN={secret}\n".encode(), host_only=True)
    write("tokens.toml", ("\n".join(toml) + "\n").encode())
    password = secrets.token_urlsafe(24)  # URL-safe: goes into the rediss:// URL as it is
    write("redis-users.acl", f"user default on nopass -@all +ping\n{acl_file_line('conveyor', password)}\n".encode())
    certs = "/certs"  # where compose mounts this folder
    url = (f"rediss://conveyor:{password}@redis:6379/0?ssl_ca_certs={certs}/ca.pem"
           f"&ssl_certfile={certs}/scheduler.pem&ssl_keyfile={certs}/scheduler-key.pem")
    write("scheduler.env", f"CONVEYOR_REDIS_URL={url}\n".encode(), host_only=True)
    print(f"wrote a CA, certificates for the schedulers, Redis and a client, {len(ROLES)} tokens and Redis' ACL "
          f"into {out}/")


if __name__ == "__main__":
    main()
