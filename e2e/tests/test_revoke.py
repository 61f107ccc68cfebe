"""Ending a user's sessions at every authd replica (issue 10, item 3): `portcullis-controller
revoke` writes the Secret portcullis-revocations through a real kube-apiserver with a
revoker's own RBAC, two authd replicas in --watch-config mode watch it, each behind its own
istiod-driven Envoy gateway, and users log in through those gateways at a real OpenID Provider
(npm oidc-provider) as a browser would (HTTP, redirects followed by hand).

Each wait for a replica to act is bounded (wait_for); nothing is timed.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.authd import Authd, WatchingAuthd, config_head, idp_login, mesh_provider  # noqa: E402
from e2e.harness.authd import set_cookies  # noqa: E402
from e2e.harness.istio import Envoy  # noqa: E402
from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.peers import Echo, OidcProvider  # noqa: E402
from e2e.harness.proc import CONTROLLER, Proc, built, free_port, http, skip_e2e  # noqa: E402
from e2e.harness.proc import wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NS, APPS = "portcullis-system", "apps"
CLIENT, SECRET = "echo", "echo-client-secret"
COOKIE_SECRET = "0123456789abcdef0123456789abcdef-revocation\n"
HOSTS = ["team.localhost", "wiki.localhost"]
PH = f"/apis/portcullis.io/v1alpha1/namespaces/{APPS}/protectedhosts"


class FileAuthd(Authd):
    """authd from --config FILE with --revocations FILE (nginx, outside Kubernetes), spoken to
    like Envoy's ext_authz."""
    check = WatchingAuthd.check
    login = WatchingAuthd.login
    readyz = WatchingAuthd.readyz


def file_config(c: dict) -> str:
    return config_head(c) + f"""\
hosts:
  - id: files/app
    hosts: [file.localhost]
    oidc: {{issuerURL: "{c['issuer']}", clientID: {CLIENT}, clientSecret: {SECRET}}}
"""


def ph(name: str, host: str, issuer: str) -> dict:
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": name, "namespace": APPS},
            "spec": {"hosts": [host],
                     "oidc": {"issuerURL": issuer, "clientID": CLIENT,
                              "clientSecretRef": {"name": "oidc", "key": "client-secret"}},
                     "session": {"lifetime": "2h"}}}


def ready(api, name: str) -> bool:
    status, body = api.get(f"{PH}/{name}")
    return status == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                 for c in json.loads(body).get("status", {}).get("conditions", []))


@pytest.fixture(scope="module")
def env(api_server):
    api = api_server
    api.install_portcullis(NS, "istio-system", APPS,
                           rbac=("controller-rbac", "authd-rbac", "revoker-rbac"))
    revoker = api.bind_revoker(NS)
    api.kubectl("-n", APPS, "create", "secret", "generic", "oidc",
                f"--from-literal=client-secret={SECRET}")
    authd_kc = api.service_account_kubeconfig(NS, "portcullis-authd")
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    a = WatchingAuthd("revoke-a", authd_kc, issuer, cookie_secret=COOKIE_SECRET)
    b = WatchingAuthd("revoke-b", authd_kc, issuer, cookie_secret=COOKIE_SECRET)
    revocations_file = api.workdir / "revocations.yaml"
    f = FileAuthd("revoke-file", file_config, cookie_secret=COOKIE_SECRET, issuer=issuer,
                  args=["--revocations", revocations_file])
    echo = Echo()
    gateways = {r.pod: Envoy(mesh_provider(r.port), echo, hosts=HOSTS) for r in (a, b)}
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                         "redirectUris": [f"http://{h}:{g.port}/oauth2/callback"
                                          for h in HOSTS for g in gateways.values()] +
                                         [f"http://file.localhost:{f.port}/oauth2/callback"]}],
                       port=idp_port)
    metrics = free_port()
    ctl = Proc("controller", [
        built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run", "--kubeconfig",
        api.controller_kubeconfig, "--mesh-config=none", "--leader-elect=false",
        "--allow-insecure-issuers", "--resync-period=0", f"--metrics-addr=127.0.0.1:{metrics}"],
        log_path=api.workdir / "controller-revoke.log")
    started = []
    try:
        for peer in (idp, echo, a, b, f, ctl, *gateways.values()):
            started.append(peer)
            peer.start()
        for i, host in enumerate(HOSTS):
            api.kubectl("apply", "-f", "-", input=json.dumps(ph(f"app{i}", host, issuer)))
            wait_for(f"{host} Ready", lambda i=i: ready(api, f"app{i}"), 60)
        yield {"api": api, "a": a, "b": b, "gw": gateways, "echo": echo, "issuer": issuer,
               "file": f, "revocations_file": revocations_file,
               "revoker": revoker}
    finally:
        for peer in reversed(started):
            peer.stop()


def through(gw: Envoy, host: str, cookies: dict | None = None, path: str = "/page"):
    """A browser's request for host through the gateway: (status, headers, body)."""
    h = {"Host": f"{host}:{gw.port}", "Accept": "text/html"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return http("GET", f"http://127.0.0.1:{gw.port}{path}", headers=h, timeout=15)


def login(gw: Envoy, host: str, user: str) -> dict:
    """The code flow through the gateway as a browser runs it; the session cookies."""
    status, headers, _ = through(gw, host)
    assert status == 302, status
    jar = {k: v for k, v in set_cookies(headers).items() if v}
    back = urllib.parse.urlsplit(idp_login(headers["Location"], user, f"{user}-password"))
    status, headers, _ = through(gw, host, jar, path=f"{back.path}?{back.query}")
    assert status == 302, status
    jar.update({k: v for k, v in set_cookies(headers).items() if v})
    return {k: v for k, v in jar.items() if not k.startswith("_portcullis_csrf_")}


def statuses(env, host: str, cookies: dict) -> list[int]:
    """The gateways' answers to a browser with cookies, replica a's then b's."""
    return [through(g, host, cookies)[0] for g in env["gw"].values()]


def revoke(env, *args: str) -> str:
    out = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "revoke",
                          "--kubeconfig", env["revoker"], *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def revocations(env) -> list[dict]:
    secret = json.loads(env["api"].kubectl("-n", NS, "get", "secret", "portcullis-revocations",
                                           "-o", "json").stdout)
    text = base64.b64decode(secret.get("data", {}).get("revocations.yaml", "")).decode()
    return (yaml.safe_load(text) or {}).get("revocations") or []


def logfmt(line: str) -> dict:
    """One authd log line (key=value, values with spaces quoted) as a dict."""
    return {k: json.loads(v) if v.startswith('"') else v
            for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


def sub_of(env, host: str, cookies: dict) -> str:
    status, headers = env["a"].check(host, cookies)
    assert status == 200, status
    return {k.lower(): v for k, v in headers}["x-auth-request-user"]


@pytest.fixture(scope="module")
def users(env):
    gw_a = env["gw"]["revoke-a"]
    return {u: login(gw_a, "team.localhost", u) for u in ("alice", "bob")}


def test_revoking_alice_by_email_ends_her_sessions_at_both_replicas(env, users):
    a, b = env["a"], env["b"]
    for u in ("alice", "bob"):
        assert statuses(env, "team.localhost", users[u]) == [200, 200], u
    logs = {r.pod: r.log_size() for r in (a, b)}
    out = revoke(env, "--user", "Alice@Example.COM")
    assert "sessions issued until" in out and "on every host" in out, out
    wait_for("alice refused at both replicas",
             lambda: statuses(env, "team.localhost", users["alice"]) == [302, 302], 30)
    status, headers, _ = through(env["gw"]["revoke-b"], "team.localhost", users["alice"])
    assert headers["Location"].startswith(env["issuer"]), headers["Location"]  # a new login
    assert statuses(env, "team.localhost", users["bob"]) == [200, 200]
    for r in (a, b):
        audit = [logfmt(line) for line in r.log_since(logs[r.pod]).splitlines()
                 if "event=session_revoked" in line]
        assert audit, f"{r.pod} logged no audit line"
        line = audit[0]
        assert line["user"] == "Alice@Example.COM" and line["host"].startswith("team.localhost")
        assert line["replica"] == r.pod and re.fullmatch(r"[0-9a-z]{10}", line["request_id"])
        assert users["alice"]["_portcullis"] not in r.log()  # never the cookie


def test_alice_logs_in_again_after_the_revocation(env, users):
    again = login(env["gw"]["revoke-b"], "team.localhost", "alice")
    assert statuses(env, "team.localhost", again) == [200, 200]
    assert statuses(env, "team.localhost", users["alice"]) == [302, 302]  # the old one stays out
    users["alice-again"] = again


def test_revoking_bob_by_sub(env, users):
    sub = sub_of(env, "team.localhost", users["bob"])
    revoke(env, "--user", sub)
    wait_for("bob refused at both replicas",
             lambda: statuses(env, "team.localhost", users["bob"]) == [302, 302], 30)
    assert statuses(env, "team.localhost", users["alice-again"]) == [200, 200]
    assert {e["user"] for e in revocations(env)} == {"Alice@Example.COM", sub}


def test_a_revocation_for_one_host_leaves_the_others(env, users):
    gw_a = env["gw"]["revoke-a"]
    carol = {h: login(gw_a, h, "carol") for h in HOSTS}
    revoke(env, "--user", "carol@example.com", "--host", "wiki.localhost")
    wait_for("carol refused on wiki at both replicas",
             lambda: statuses(env, "wiki.localhost", carol["wiki.localhost"]) == [302, 302], 30)
    assert statuses(env, "team.localhost", carol["team.localhost"]) == [200, 200]
    entry = [e for e in revocations(env) if e["user"] == "carol@example.com"]
    assert entry and entry[0]["hosts"] == ["wiki.localhost"], entry


def test_the_revocation_survives_an_authd_restart(env, users):
    a = env["a"]
    a.stop()
    a.start()
    wait_for("authd-a ready again", lambda: a.readyz()[0] == 200, 30, ignore=(OSError,))
    assert statuses(env, "team.localhost", users["alice"]) == [302, 302]
    assert statuses(env, "team.localhost", users["alice-again"]) == [200, 200]


def test_entries_past_the_retention_are_dropped(env, users):
    """Each write drops the entries older than the retention: by default the longest session
    lifetime of the ProtectedHosts (2h here), so nothing recent goes; --retain shortens it.
    A dropped entry revokes nothing any more, which is why the default is the lifetime."""
    assert len(revocations(env)) == 3
    out = revoke(env, "--user", "dave@example.com")
    assert "(secret portcullis-system/portcullis-revocations: 4 entries, 0 expired dropped)" in out
    newest = max(calendar.timegm(e["notBefore"].utctimetuple()) for e in revocations(env))
    wait_for("the newest entry older than 1s", lambda: time.time() >= newest + 2, 5, 0.05)
    out = revoke(env, "--user", "erin@example.com", "--retain", "1s")
    assert "1 entries, 4 expired dropped" in out, out
    assert [e["user"] for e in revocations(env)] == ["erin@example.com"]
    wait_for("alice's first session accepted again at both replicas",
             lambda: statuses(env, "team.localhost", users["alice"]) == [200, 200], 30)


def test_the_file_form_outside_kubernetes(env):
    """authd --config FILE --revocations FILE and revoke --file: the same list in a file,
    re-read when it changes; a broken file is refused and the list before stays in force."""
    f, path = env["file"], env["revocations_file"]
    assert f.readyz()[0] == 200  # no file yet: nothing revoked, ready
    alice, bob = f.login("file.localhost", "alice"), f.login("file.localhost", "bob")
    out = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "revoke", "--user",
                          "alice@example.com", "--file", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "1 entries" in out.stdout, out
    wait_for("alice refused", lambda: f.check("file.localhost", alice)[0] == 302, 10)
    assert f.check("file.localhost", bob)[0] == 200
    offset = f.log_size()
    path.write_text("revocations: [this is: not a list\n")
    wait_for("the broken file refused", lambda: "event=revocations_rejected" in f.log_since(offset),
             10)
    assert f.check("file.localhost", alice)[0] == 302  # the list before stays in force
    assert f.check("file.localhost", f.login("file.localhost", "alice"))[0] == 200
