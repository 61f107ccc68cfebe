"""ingress-nginx mode (issue 11 item 2): a ProtectedHost with spec.ingress gets auth-url,
auth-signin and auth-response-headers on the Ingresses that serve its hosts, against a real
kube-apiserver (no Istio CRDs installed: an nginx-only cluster), the controller with the RBAC
of deploy/, one authd replica in --watch-config mode, the npm oidc-provider, Debian's nginx
configured from the annotations the controller wrote (read back from the apiserver and
rendered as ingress-nginx's nginx.tmpl renders them: e2e/harness/ingress.py) and headless
Chromium.

  apps/team     team.ing.localhost    allowedGroups [staff]
  apps/ops      ops.ing.localhost     allowedGroups [admins]
  (each served by an Ingress of class nginx in apps, the sign-in route of both by one
  Ingress in portcullis-system that sends /oauth2 to authd's Service)

Every wait is bounded; nothing is timed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.authd import WatchingAuthd  # noqa: E402
from e2e.harness.ingress import AnnotatedIngressNginx  # noqa: E402
from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.peers import Browser, Echo, OidcProvider  # noqa: E402
from e2e.harness.proc import CONTROLLER, Proc, built, free_port, http, skip_e2e  # noqa: E402
from e2e.harness.proc import wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NS, APPS = "portcullis-system", "apps"
CLIENT, SECRET = "ing", "ing-client-secret"
COOKIE_SECRET = "0123456789abcdef0123456789abcdef-ingress-nginx\n"
AUTH_URL = "http://portcullis-authd.portcullis-system.svc.cluster.local:4180/oauth2/auth"
A = "nginx.ingress.kubernetes.io/"
OURS = (A + "auth-url", A + "auth-signin", A + "auth-response-headers", "portcullis.io/protected-by")
HEADERS = "X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Preferred-Username,X-Auth-Request-Groups"
PH = "/apis/portcullis.io/v1alpha1/namespaces/{ns}/protectedhosts/{name}"
ING = "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}"


def protected_host(name: str, hosts: list[str], issuer: str, groups: list[str], **extra) -> dict:
    spec = {"hosts": hosts, "ingress": {"className": "nginx"},
            "oidc": {"issuerURL": issuer, "clientID": CLIENT,
                     "clientSecretRef": {"name": "oidc", "key": "client-secret"}},
            "access": {"allowedGroups": groups}, **extra}
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": name, "namespace": APPS}, "spec": spec}


def ingress(name: str, host: str, *, ns: str = APPS, cls: str | None = "nginx",
            paths=("/",), service=("echo", 80), annotations: dict | None = None) -> dict:
    spec = {"rules": [{"host": host, "http": {"paths": [
        {"path": p, "pathType": "Prefix",
         "backend": {"service": {"name": service[0], "port": {"number": service[1]}}}}
        for p in paths]}}]}
    if cls:
        spec["ingressClassName"] = cls
    md = {"name": name, "namespace": ns}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": md, "spec": spec}


def apply(api, obj: dict) -> None:
    api.kubectl("apply", "-f", "-", input=json.dumps(obj))


def get(api, path: str) -> dict | None:
    status, body = api.get(path)
    return json.loads(body) if status == 200 else None


def annotations(api, name: str, ns: str = APPS) -> dict:
    """The Ingress's annotations but kubectl's own last-applied copy."""
    got = (get(api, ING.format(ns=ns, name=name)) or {"metadata": {}})["metadata"].get(
        "annotations") or {}
    return {k: v for k, v in got.items() if k != "kubectl.kubernetes.io/last-applied-configuration"}


def ours(api, name: str, ns: str = APPS) -> dict:
    return {k: v for k, v in annotations(api, name, ns).items() if k in OURS}


def ready(api, name: str) -> dict | None:
    obj = get(api, PH.format(ns=APPS, name=name))
    if not obj:
        return None
    gen = obj["metadata"].get("generation", 0)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Ready" and c.get("observedGeneration", 0) >= gen:
            return c
    return None


def ready_reason(api, name: str, reason: str) -> dict | None:
    c = ready(api, name)
    return c if c and c["reason"] == reason else None


def events(api, name: str) -> list[dict]:
    out = api.kubectl("-n", APPS, "get", "events", "-o", "json",
                      f"--field-selector=involvedObject.name={name}").stdout
    return json.loads(out)["items"]


@pytest.fixture(scope="module")
def env(api_server):
    api = api_server
    api.install_portcullis(NS, APPS, istio=False)
    api.kubectl("-n", APPS, "create", "secret", "generic", "oidc",
                f"--from-literal=client-secret={SECRET}")
    nginx_port, idp_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    authd = WatchingAuthd("authd-ing", api.service_account_kubeconfig(NS, "portcullis-authd"),
                          issuer, cookie_secret=COOKIE_SECRET)
    hosts = ("team.ing.localhost", "ops.ing.localhost")
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                         "redirectUris": [f"http://{h}:{nginx_port}/oauth2/callback"
                                          for h in hosts]}], port=idp_port)
    echo = Echo()
    metrics = free_port()
    ctl = Proc("controller", [
        built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run", "--kubeconfig",
        api.controller_kubeconfig, "--mesh-config=none", "--leader-elect=false",
        "--allow-insecure-issuers", "--resync-period=0", f"--metrics-addr=127.0.0.1:{metrics}",
        "--log-level=debug"], log_path=api.workdir / "controller-ingress.log")
    try:
        for peer in (idp, echo, authd, ctl):
            peer.start()
        ctl.wait_http(f"http://127.0.0.1:{metrics}/readyz", 30, ok=lambda s: s == 200)
        yield {"api": api, "issuer": issuer, "authd": authd, "echo": echo, "ctl": ctl,
               "nginx_port": nginx_port, "log": api.workdir / "controller-ingress.log"}
    finally:
        for peer in (ctl, authd, echo, idp):
            peer.stop()


def test_the_crd_refuses_what_ingress_nginx_cannot_take(env):
    api = env["api"]
    bad = [({"ingress": {}}, "className"),
           ({"ingress": {"className": "Nginx"}}, "className"),
           ({"ingress": {"className": "nginx", "scheme": "ftp"}}, "scheme"),
           ({"ingress": {"className": "nginx"},
             "upstreamHeaders": [{"name": "X.User", "claim": "sub"}]}, "upstreamHeaders")]
    for extra, field in bad:
        obj = protected_host("bad", ["bad.ing.localhost"], env["issuer"], [])
        obj["spec"].update(extra)
        r = api.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
        assert r.returncode != 0 and field in r.stderr, (extra, r.stderr)
    obj = protected_host("bad", ["bad.ing.localhost"], env["issuer"], [])
    obj["spec"]["upstreamHeaders"] = [{"name": "X.User", "claim": "sub"}]
    del obj["spec"]["ingress"]
    r = api.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)
    assert r.returncode == 0, r.stderr  # the stricter names are for ingress mode only


def test_annotations_appear_on_the_ingresses_of_its_hosts_and_go_with_it(env):
    """Only the Ingresses of the class that serve the host carry them; the sign-in route (in
    another namespace), another host's Ingress and other annotations are left as they are; an
    Ingress created later is annotated without a ProtectedHost change; deleting the
    ProtectedHost removes exactly the controller's annotations (an empty apply)."""
    api = env["api"]
    host = "app.ing.localhost"
    apply(api, ingress("app", host, annotations={"team.example.com/owner": "payments"}))
    apply(api, ingress("app-login", host, ns=NS, paths=("/oauth2",),
                       service=("portcullis-authd", 4180)))
    apply(api, ingress("elsewhere", "elsewhere.ing.localhost"))
    apply(api, protected_host("app", [host], env["issuer"], ["staff"]))
    want = {A + "auth-url": AUTH_URL,
            A + "auth-signin": "http://$http_host/oauth2/start?rd=$escaped_request_uri",
            A + "auth-response-headers": HEADERS, "portcullis.io/protected-by": "apps/app"}
    wait_for("app annotated", lambda: ours(api, "app") == want, 30)
    cond = wait_for("Ready", lambda: ready_reason(api, "app", "Applied"), 30)
    assert cond["status"] == "True"
    assert "Ingress apps/app annotated (class \"nginx\")" in cond["message"], cond
    assert f"{NS}/app-login is the sign-in route" in cond["message"], cond
    assert ours(api, "app-login", NS) == {} and ours(api, "elsewhere") == {}
    assert annotations(api, "app")["team.example.com/owner"] == "payments"
    # the annotations are the controller's own fields
    managed = get(api, ING.format(ns=APPS, name="app"))["metadata"]["managedFields"]
    mine = [m for m in managed if m["manager"] == "portcullis-ingress"]
    assert len(mine) == 1 and mine[0]["operation"] == "Apply", managed
    assert set(mine[0]["fieldsV1"]["f:metadata"]["f:annotations"]) == {f"f:{k}" for k in OURS}

    apply(api, ingress("app-api", host, paths=("/api",)))
    wait_for("a new Ingress of the host annotated", lambda: ours(api, "app-api") == want, 30)
    wait_for("Ready names both", lambda: "apps/app-api" in (ready(api, "app") or {}).get(
        "message", ""), 30)

    api.kubectl("-n", APPS, "delete", "protectedhost", "app", "--wait=true", "--timeout=60s")
    wait_for("annotations removed", lambda: ours(api, "app") == {} and
             ours(api, "app-api") == {}, 30)
    assert annotations(api, "app") == {"team.example.com/owner": "payments"}
    assert ours(api, "app-login", NS) == {}


def test_another_auth_url_is_left_alone_and_reported(env):
    """An Ingress that another gate (oauth2-proxy) protects keeps its auth-url; the
    ProtectedHost says so in Ready and an Event. A field set by another manager with another
    value is a server-side-apply conflict, reported the same way and not taken over."""
    api = env["api"]
    host = "guarded.ing.localhost"
    proxy = "http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth"
    apply(api, ingress("guarded", host, annotations={A + "auth-url": proxy}))
    apply(api, protected_host("guarded", [host], env["issuer"], ["staff"]))
    cond = wait_for("IngressConflict", lambda: ready_reason(api, "guarded", "IngressConflict"), 30)
    assert cond["status"] == "False"
    assert f"Ingress apps/guarded carries auth-url \"{proxy}\"" in cond["message"], cond
    assert annotations(api, "guarded") == {A + "auth-url": proxy}
    ev = wait_for("a Warning Event", lambda: [e for e in events(api, "guarded")
                                              if e["reason"] == "IngressConflict"], 30)
    assert ev[0]["type"] == "Warning" and proxy in ev[0]["message"]

    # another manager's auth-response-headers: the apply is refused, nothing is forced
    apply(api, ingress("guarded", host, annotations={A + "auth-response-headers": "X-Mine"}))
    cond = wait_for("the apply's conflict", lambda: (c := ready_reason(
        api, "guarded", "IngressConflict")) and "conflict" in c["message"] and c, 30)
    assert "auth-response-headers" in cond["message"] and "kubectl" in cond["message"], cond
    assert ours(api, "guarded") == {A + "auth-response-headers": "X-Mine"}

    # the other gate gone: portcullis takes over
    apply(api, ingress("guarded", host))
    wait_for("Ready", lambda: ready_reason(api, "guarded", "Applied"), 30)
    assert ours(api, "guarded")[A + "auth-url"] == AUTH_URL
    api.kubectl("-n", APPS, "delete", "protectedhost", "guarded", "--wait=true", "--timeout=60s")
    wait_for("released", lambda: ours(api, "guarded") == {}, 30)


def test_an_ingress_of_another_class_serving_the_host_is_reported(env):
    api = env["api"]
    host = "classy.ing.localhost"
    apply(api, ingress("classy", host))
    apply(api, ingress("classy-alb", host, cls="alb"))
    apply(api, ingress("classy-none", host, cls=None))
    apply(api, protected_host("classy", [host], env["issuer"], ["staff"]))
    cond = wait_for("IngressConflict", lambda: ready_reason(api, "classy", "IngressConflict"), 30)
    assert "Ingress apps/classy-alb serves classy.ing.localhost with class \"alb\"" in \
        cond["message"], cond
    assert "Ingress apps/classy-none serves classy.ing.localhost without an ingressClassName" in \
        cond["message"], cond
    assert ours(api, "classy")["portcullis.io/protected-by"] == "apps/classy"
    assert ours(api, "classy-alb") == {} and ours(api, "classy-none") == {}
    api.kubectl("-n", APPS, "delete", "ingress", "classy-alb", "classy-none")
    wait_for("Ready", lambda: ready_reason(api, "classy", "Applied"), 30)
    api.kubectl("-n", APPS, "delete", "ingress", "classy")
    cond = wait_for("NoIngress", lambda: ready_reason(api, "classy", "NoIngress"), 30)
    assert cond["status"] == "False"
    api.kubectl("-n", APPS, "delete", "protectedhost", "classy", "--wait=true", "--timeout=60s")


def test_nginx_configured_from_the_annotations_protects_two_hosts_with_their_groups(env):
    """Real nginx, configured from the Ingresses as the controller left them in the apiserver,
    in front of the echo app: bob (staff) signs in on team and sees his identity headers, is
    refused on ops (admins only); alice (admins) gets into ops. One authd decides both."""
    api, port = env["api"], env["nginx_port"]
    team, ops = "team.ing.localhost", "ops.ing.localhost"
    apply(api, ingress("team", team))
    apply(api, ingress("ops", ops))
    login = ingress("login", team, ns=NS, paths=("/oauth2",), service=("portcullis-authd", 4180))
    login["spec"]["rules"].append({"host": ops, "http": login["spec"]["rules"][0]["http"]})
    apply(api, login)
    apply(api, protected_host("team", [team], env["issuer"], ["staff"]))
    apply(api, protected_host("ops", [ops], env["issuer"], ["admins"]))
    for name in ("team", "ops"):
        wait_for(f"{name} Ready", lambda n=name: ready_reason(api, n, "Applied"), 60)
    objs = [get(api, ING.format(ns=ns, name=n))
            for ns, n in ((APPS, "team"), (APPS, "ops"), (NS, "login"))]
    assert objs[0]["metadata"]["annotations"][A + "auth-url"] == AUTH_URL
    authd, echo = env["authd"], env["echo"]
    nginx = AnnotatedIngressNginx(objs, {
        f"echo.{APPS}:80": echo, f"portcullis-authd.{NS}:4180": ("127.0.0.1", authd.port),
        "portcullis-authd.portcullis-system.svc.cluster.local:4180": ("127.0.0.1", authd.port)},
        port=port)
    with nginx:
        conf = nginx.conf_path.read_text()
        assert "auth_request_set $authHeader3 $upstream_http_x_auth_request_groups;" in conf
        assert "set_escape_uri $escaped_request_uri $request_uri;" in conf
        # no session: the sign-in redirect ingress-nginx renders from auth-signin
        status, headers, _ = http("GET", f"http://127.0.0.1:{port}/dash?x=1&y=2",
                                  headers={"Host": f"{team}:{port}"})
        assert status == 302, status
        assert headers["Location"] == \
            f"http://{team}:{port}/oauth2/start?rd=%2Fdash%3Fx%3D1%26y%3D2", headers
        browser = Browser()
        bob = browser.run([
            {"goto": f"http://{team}:{port}/dash?x=1&y=2"},
            {"login": {"username": "bob", "password": "bob-password"}},
            {"expect_status": 200}, {"expect_url": f"{team}:{port}/dash?x=1&y=2"},
            {"save_text": True},
            # signed in at the IdP already: no form, back from the callback to a 403
            {"goto": f"http://{ops}:{port}/ops"},
            {"expect_status": 403}, {"expect_url": f"{ops}:{port}/ops"}])
        page = next(s for s in bob["steps"] if s.get("text"))["text"]
        assert "bob@example.com" in page and "staff" in page, page[:2000]
        alice = browser.run([
            {"goto": f"http://{ops}:{port}/ops"},
            {"login": {"username": "alice", "password": "alice-password"}},
            {"expect_status": 200}, {"save_text": True}])
        page = next(s for s in alice["steps"] if s.get("text"))["text"]
        assert "alice@example.com" in page and "admins" in page, page[:2000]
        seen = [r for r in echo.requests if r["path"].startswith(("/dash", "/ops"))]
        assert {r["headers"].get("x-auth-request-email") for r in seen} == \
            {"bob@example.com", "alice@example.com"}, seen


def test_a_cluster_without_istio_is_no_error(env):
    """No AuthorizationPolicy kind is served here: the resync's scan for stale policies finds
    nothing to delete instead of failing (and the resync being retried forever). Last in the
    module, so the first resync is long done."""
    log = env["log"].read_text(errors="replace")
    assert "caches_synced" in log
    assert "orphan_scan_failed" not in log and "key=resync" not in log, log[-3000:]
