"""Debian's redis-server for the e2e tests and bench/: started on a free 127.0.0.1 port with a
password (requirepass, as the Redis Helm chart runs it), optionally TLS only (a CA and a server
certificate made with openssl), no persistence. `cli()` runs redis-cli against it;
`kill()` is SIGKILL, `start()` again brings it back on the same port.

Standard library only.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from .proc import PeerError, Proc, free_port, work_dir

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Redis:
    """redis-server on 127.0.0.1:port (password `password`); tls=True: TLS only (rediss://),
    ca.pem beside it signs a certificate for 127.0.0.1 and localhost."""

    def __init__(self, name: str = "redis", *, password: str = "redis-test-password",
                 tls: bool = False, port: int | None = None):
        if not Path(REDIS_SERVER).exists():
            raise PeerError("redis-server not found (scripts/deps.sh installs it)")
        self.dir = work_dir(name)
        self.port = port or free_port()
        self.password, self.tls = password, tls
        self.password_file = self.dir / "password"
        self.password_file.write_text(password + "\n")
        self.ca = self.dir / "ca.pem"
        if tls:
            self._certs()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    def _certs(self):
        d = self.dir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                 "/CN=test redis CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", "server.key", "-out", "server.csr", cwd=d)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem",
                 cwd=d)

    def _args(self) -> list:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                "--appendonly", "no", "--requirepass", self.password, "--daemonize", "no",
                "--loglevel", "notice"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.dir / "server.pem",
                     "--tls-key-file", self.dir / "server.key",
                     "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        return args

    def start(self, timeout: float = 15) -> "Redis":
        self.proc = Proc("redis", self._args(), log_path=self.dir / "redis.log").start()
        self.proc.wait(lambda: self.cli("PING", check=False).strip() == "PONG",
                       f"redis on {self.port}", timeout)
        return self

    def cli(self, *args, check: bool = True) -> str:
        """redis-cli ARGS... against this server; its output (raw, one reply element a line)."""
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning",
               "-a", self.password, "--raw"]
        if self.tls:
            cmd += ["--tls", "--cacert", str(self.ca)]
        r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, timeout=10)
        if check and r.returncode != 0:
            raise PeerError(f"redis-cli {args}: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def get(self, key: str) -> bytes:
        """The raw value of key (b"" when absent)."""
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning",
               "-a", self.password, "--raw"]
        if self.tls:
            cmd += ["--tls", "--cacert", str(self.ca)]
        out = subprocess.run(cmd + ["GET", key], capture_output=True, timeout=10).stdout
        return out[:-1] if out.endswith(b"\n") else out

    def keys(self, pattern: str = "*") -> list[str]:
        return [k for k in self.cli("KEYS", pattern).splitlines() if k]

    def kill(self):
        """SIGKILL: no shutdown, connections reset."""
        if self.proc and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.popen.wait(10)

    def stop(self):
        if self.proc:
            self.proc.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def config(self, **extra) -> str:
        """authd's redis section (YAML flow map) for this server; extra keys as given."""
        items = {"url": f"'{self.url}'", "passwordFile": str(self.password_file), **extra}
        if self.tls:
            items.setdefault("caFile", str(self.ca))
        return "redis: {" + ", ".join(f"{k}: {v}" for k, v in items.items()) + "}\n"
