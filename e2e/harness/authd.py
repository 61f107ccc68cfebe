"""portcullis-authd for the e2e tests and bench/: the daemon with its config file, cookie
secret, admin port and log (`Authd`), its config as kubelet projects a Secret volume
(`publish_volume`), the mesh extension provider that points a gateway Envoy at it, and the
client-side pieces of a login (the IdP's form, Set-Cookie answers).

The binary is not built here: env PORTCULLIS_AUTHD, default build/authd/portcullis-authd.
Standard library only (bench/authd_helper.py imports it too).
"""
from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from .proc import AUTHD, NoRedirect, Proc, free_port, http, metric_value, work_dir

# README.md "Mesh-config modes" / DESIGN.md §4.2: the headers of the provider the controller
# merges into meshConfig.
MESH_PROVIDER = {
    "pathPrefix": "/ext-authz", "timeout": "2s", "failOpen": False, "statusOnError": "503",
    "includeRequestHeadersInCheck": ["cookie", "authorization", "accept", "x-requested-with",
                                     "sec-fetch-mode", "x-forwarded-proto", "x-forwarded-host",
                                     "user-agent"],
    "headersToUpstreamOnAllow": ["x-auth-request-user", "x-auth-request-email",
                                 "x-auth-request-preferred-username", "x-auth-request-groups",
                                 "authorization", "cookie"],
    "headersToDownstreamOnDeny": ["content-type", "set-cookie", "location", "www-authenticate",
                                  "cache-control"],
    "headersToDownstreamOnAllow": ["set-cookie"],
}


def mesh_provider(authd_port: int, service: str = "127.0.0.1") -> dict:
    """The envoyExtAuthzHttp provider (MESH_PROVIDER) pointed at authd on service:authd_port."""
    return {"service": service, "port": authd_port, **MESH_PROVIDER}


def config_head(c: dict) -> str:
    """The start of an authd config for Authd.c: its ports on 127.0.0.1, its cookie secret,
    plain-http issuers allowed (the test IdPs). The caller appends `hosts:`."""
    return (f"listen: 127.0.0.1:{c['port']}\n"
            f"adminListen: 127.0.0.1:{c['admin']}\n"
            "allowInsecureIssuers: true\n"
            f"cookieSecretFiles: [{c['secret']}]\n")


class Authd:
    """portcullis-authd on 127.0.0.1: free ports (`port`, `admin`), a cookie secret and
    config.yaml in a fresh work dir, the log in authd.log. render(c) writes the config from
    c = {port, admin, secret (path), **params} (config_head(c) gives its first lines);
    write_config() replaces it atomically (the daemon reloads it)."""

    def __init__(self, name: str, render, *, cookie_secret: str, args=(), **params):
        self.dir = work_dir(name)
        self.port, self.admin = free_port(), free_port()
        secret = self.dir / "cookie-secret"
        secret.write_text(cookie_secret)
        self.c = {"port": self.port, "admin": self.admin, "secret": secret, **params}
        self.config = self.dir / "config.yaml"
        self.log_path = self.dir / "authd.log"
        self.args = [str(a) for a in args]
        self.write_config(render(self.c))
        self.proc: Proc | None = None

    def write_config(self, text: str):
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def start(self, ready: str = "/healthz", timeout: float = 10):
        """Starts the daemon and waits until the admin path ready answers 200."""
        assert AUTHD.exists(), f"build portcullis-authd first (or set PORTCULLIS_AUTHD): {AUTHD}"
        self.proc = Proc("authd", [AUTHD, "--config", self.config, *self.args],
                         log_path=self.log_path).start()
        self.proc.wait_http(f"http://127.0.0.1:{self.admin}{ready}", timeout, ok=lambda s: s == 200)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def metrics(self) -> str:
        return http("GET", f"http://127.0.0.1:{self.admin}/metrics")[2].decode()

    def metric(self, name_and_labels: str) -> float:
        """One series of /metrics; 0 when it is not there (yet)."""
        return metric_value(self.metrics(), name_and_labels) or 0.0

    def wait_metric(self, name: str, value: float, timeout: float = 10):
        """Until the series reaches value; fails the test after timeout."""
        deadline = time.monotonic() + timeout
        while self.metric(name) < value:
            assert time.monotonic() < deadline, f"{name} never reached {value}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


class WatchingAuthd(Authd):
    """portcullis-authd --watch-config as pod `pod`, authenticating with kubeconfig (its
    Lease is portcullis-authd-<pod>); check() speaks like Envoy's ext_authz to its door."""

    def __init__(self, pod, kubeconfig, issuer, *, cookie_secret, head_file=False, args=()):
        super().__init__(f"authd-{pod}", lambda c: config_head(c) + "hosts: []\n",
                         cookie_secret=cookie_secret, issuer=issuer, args=args)
        self.pod, self.kubeconfig, self.head_file = pod, kubeconfig, head_file
        self.lease = f"portcullis-authd-{pod}"

    def start(self, ready=None, timeout=15):
        head = (["--config", self.config] if self.head_file else
                ["--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
                 "--cookie-secret-file", self.c["secret"], "--allow-insecure-issuers"])
        self.proc = Proc("authd", [AUTHD, *head, "--watch-config", "--kubeconfig", self.kubeconfig,
                                   "--log-level", "debug", *self.args],
                         env={"POD_NAME": self.pod}, log_path=self.log_path).start()
        self.proc.wait_http(f"http://127.0.0.1:{self.admin}/healthz", timeout,
                            ok=lambda s: s == 200)
        return self

    def login(self, host: str, user: str) -> dict:
        """The code flow through this replica's Envoy door on host as user (password
        "<user>-password", as DEFAULT_USERS has it); the session cookies."""
        status, headers = self.check(host, path="/ext-authz/app")
        assert status == 302, status
        jar = {k: v for k, v in set_cookies(headers).items() if v}
        back = urllib.parse.urlsplit(idp_login(dict(headers)["Location"], user,
                                               f"{user}-password"))
        status, headers = self.check(host, jar, path=f"/ext-authz{back.path}?{back.query}")
        assert status == 302, status
        jar.update({k: v for k, v in set_cookies(headers).items() if v})
        return {k: v for k, v in jar.items() if not k.startswith("_portcullis_csrf_")}

    def readyz(self):
        conn = httpclient.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        try:
            conn.request("GET", "/readyz")
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def check(self, host, cookies=None, path="/ext-authz/page", accept="text/html"):
        """One check as Envoy's ext_authz sends it: (status, headers as a dict, lowercased)."""
        conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": f"{host}:{self.port}", "X-Forwarded-Proto": "http", "Accept": accept}
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        try:
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            r.read()
            return r.status, r.getheaders()
        finally:
            conn.close()



def publish_volume(volume: Path, files: dict) -> None:
    """Writes files ({name: str or bytes}) into volume the way kubelet fills a Secret volume:
    a new timestamped directory, an atomic rename of the "..data" symlink to it, each name a
    symlink through "..data", then the previous directory removed."""
    volume.mkdir(parents=True, exist_ok=True)
    stamp = volume / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (stamp / name).write_bytes(data)
    tmp = volume / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    data_link = volume / "..data"
    old = data_link.resolve() if data_link.exists() else None
    os.replace(tmp, data_link)
    for name in files:
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")
    if old is not None and old.is_dir():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def set_cookies(headers) -> dict:
    """name -> value for every Set-Cookie (value None when it clears the cookie); headers as
    an email.Message (urllib) or as (name, value) pairs (http.client)."""
    if hasattr(headers, "get_all"):
        values = headers.get_all("Set-Cookie") or []
    else:
        values = [v for k, v in headers if k.lower() == "set-cookie"]
    out = {}
    for v in values:
        name, _, rest = v.partition("=")
        out[name] = None if "max-age=0" in v.lower() else rest.split(";", 1)[0]
    return out


REDIRECTS = (301, 302, 303, 307, 308)


def idp_login(url: str, username: str, password: str, *, opener=None, steps: int = 12) -> str:
    """Drives oidc-provider's login form like a browser, from url (an authorization request,
    or a page that redirects to one) through redirects and the form; returns the redirect back
    to the relying party's /oauth2/callback without following it. opener: one with the
    caller's cookie jar (default: a fresh jar); redirects are never followed by it."""
    if opener is None:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()),
                                             NoRedirect())
    data = None
    for _ in range(steps):
        status, headers, body = http("POST" if data else "GET", url, data=data, opener=opener)
        data = None
        if status in REDIRECTS:
            loc = urllib.parse.urljoin(url, headers["Location"])
            if "/oauth2/callback" in loc:
                return loc
            url = loc
            continue
        m = re.search(rb'action="(/interaction/[^"]+/login)"', body)
        assert status == 200 and m, f"unexpected IdP page {status}: {body[:300]!r}"
        url = urllib.parse.urljoin(url, m.group(1).decode())
        data = {"username": username, "password": password}
    raise AssertionError("IdP login did not redirect back")
