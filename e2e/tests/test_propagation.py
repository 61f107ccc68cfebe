"""Policy changes reach every authd replica before the gateway acts on them, and Ready tells
the truth (issue 8), against a real kube-apiserver (e2e/harness/kube.py), the controller, two
authd replicas in --watch-config mode on their ServiceAccount's token, and a real OpenID
Provider (npm oidc-provider).

The gateway is played by this test: it sends a check for a host the moment that host's
AuthorizationPolicy exists, which is when a real gateway would start sending them. Every wait
is bounded; times are printed, never asserted.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
import subprocess
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.authd import WatchingAuthd  # noqa: E402
from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.peers import OidcProvider  # noqa: E402
from e2e.harness.proc import CONTROLLER, REPO, Proc, built, free_port, skip_e2e  # noqa: E402
from e2e.harness.proc import wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NS = "portcullis-system"
APPS = "apps"
CLIENT, SECRET = "echo", "echo-client-secret"
COOKIE_SECRET = "0123456789abcdef0123456789abcdef-propagation\n"
AP = "/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies"
PH = f"/apis/portcullis.io/v1alpha1/namespaces/{APPS}/protectedhosts"


def ph(name: str, host: str, issuer: str, groups: list[str]) -> dict:
    return {"apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
            "metadata": {"name": name, "namespace": APPS},
            "spec": {"hosts": [host],
                     "oidc": {"issuerURL": issuer, "clientID": CLIENT,
                              "clientSecretRef": {"name": "oidc", "key": "client-secret"}},
                     "access": {"allowedGroups": groups}}}


def apply(api, obj: dict) -> None:
    api.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ready(api, name: str, generation: int | None = None) -> dict | None:
    """The Ready condition of apps/name (None while it speaks of an older generation)."""
    status, body = api.get(f"{PH}/{name}")
    if status != 200:
        return None
    obj = json.loads(body)
    gen = generation or obj["metadata"].get("generation", 0)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Ready" and c.get("observedGeneration", 0) >= gen:
            return c
    return None


@pytest.fixture(scope="module")
def env(api_server):
    api = api_server
    api.install_portcullis(NS, "istio-system", APPS)
    api.kubectl("-n", APPS, "create", "secret", "generic", "oidc",
                f"--from-literal=client-secret={SECRET}")
    kubeconfig = api.service_account_kubeconfig(NS, "portcullis-authd")
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    a = WatchingAuthd("authd-a", kubeconfig, issuer, cookie_secret=COOKIE_SECRET)
    b = WatchingAuthd("authd-b", kubeconfig, issuer, cookie_secret=COOKIE_SECRET)
    hosts = [f"{n}.localhost" for n in ("team", "new", "later", "restart")]
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                         "redirectUris": [f"http://{h}:{r.port}/oauth2/callback"
                                          for h in hosts for r in (a, b)]}], port=idp_port)
    metrics = free_port()
    ctl = Proc("controller", [
        built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run", "--kubeconfig",
        api.controller_kubeconfig, "--mesh-config=none", "--leader-elect=false",
        "--allow-insecure-issuers", "--resync-period=0", f"--metrics-addr=127.0.0.1:{metrics}",
        "--log-level=debug"], log_path=api.workdir / "controller-propagation.log")
    try:
        idp.start()
        a.start()
        b.start()
        ctl.start()
        ctl.wait_http(f"http://127.0.0.1:{metrics}/readyz", 30, ok=lambda s: s == 200)
        yield {"api": api, "a": a, "b": b, "issuer": issuer, "ctl": ctl, "kubeconfig": kubeconfig}
    finally:
        ctl.stop()
        a.stop()
        b.stop()
        idp.stop()


@pytest.fixture(scope="module")
def team(env):
    """team.localhost for admins and staff; alice (admins) and bob (staff) signed in."""
    api, a, b = env["api"], env["a"], env["b"]
    apply(api, ph("team", "team.localhost", env["issuer"], ["admins", "staff"]))
    wait_for("team Ready", lambda: (ready(api, "team") or {}).get("status") == "True", 60)
    return {"alice": a.login("team.localhost", "alice"), "bob": a.login("team.localhost", "bob")}


def user_of(headers) -> str | None:
    return {k.lower(): v for k, v in headers}.get("x-auth-request-user")


def test_a_new_host_is_known_to_every_replica_before_its_policy_exists(env, team):
    """While one replica cannot load anything (stopped with SIGSTOP), the new host gets no
    AuthorizationPolicy; once it has caught up, the policy appears, and the first checks the
    gateway would send are decided by the host's policy at both replicas: a check without a
    session asks for a login instead of "unknown host"."""
    api, a, b = env["api"], env["a"], env["b"]
    policy = f"{AP}/portcullis-{APPS}-new"
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        apply(api, ph("new", "new.localhost", env["issuer"], ["admins"]))
        # authd-a loads the host at once; authd-b cannot, so the gateway must not be told yet.
        wait_for("authd-a to know the host", lambda: a.check(
            "new.localhost", accept="application/json")[0] == 401, 30)
        for _ in range(20):
            assert api.get(policy)[0] == 404, "policy applied before every replica loaded it"
            time.sleep(0.1)
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    wait_for("the policy", lambda: api.get(policy)[0] == 200, 30, interval=0.005)
    seen = [r.check("new.localhost", accept="application/json")[0] for r in (a, b)]
    print(f"\nkubectl apply -> policy, both replicas enforcing: {time.monotonic() - t0:.2f} s "
          "(one replica stopped for 2 s of it)")
    assert seen == [401, 401], seen  # 403 would be "no policy for this host"


def test_removing_a_group_is_enforced_at_both_replicas_when_ready_says_so(env, team):
    api, a, b = env["api"], env["a"], env["b"]
    for r in (a, b):
        status, headers = r.check("team.localhost", team["bob"])
        assert status == 200 and user_of(headers), status
    t0 = time.monotonic()
    api.kubectl("-n", APPS, "patch", "ph", "team", "--type=merge",
                "-p", json.dumps({"spec": {"access": {"allowedGroups": ["admins"]}}}))
    gen = json.loads(api.get(f"{PH}/team")[1])["metadata"]["generation"]
    cond = wait_for("Ready for the new generation",
                    lambda: (ready(api, "team", gen) or {}).get("status") == "True" and
                    ready(api, "team", gen), 30, interval=0.02)
    elapsed = time.monotonic() - t0
    # Ready=True means enforced: no further wait before asking both replicas.
    assert [r.check("team.localhost", team["bob"])[0] for r in (a, b)] == [403, 403]
    assert [r.check("team.localhost", team["alice"])[0] for r in (a, b)] == [200, 200]
    print(f"\nkubectl patch (bob's group removed) -> Ready and bob 403 at both: {elapsed:.2f} s")
    assert "every authd replica enforces it" in cond["message"]


def set_team_groups(api, groups: list[str]) -> int:
    """Patches team's allowedGroups; the generation that makes."""
    api.kubectl("-n", APPS, "patch", "ph", "team", "--type=merge",
                "-p", json.dumps({"spec": {"access": {"allowedGroups": groups}}}))
    return json.loads(api.get(f"{PH}/team")[1])["metadata"]["generation"]


def wait_team_ready(api, gen: int, status: str, timeout: float = 30) -> dict:
    """team's Ready condition for generation gen, once its status is status."""
    return wait_for(f"team Ready={status}",
                    lambda: (ready(api, "team", gen) or {}).get("status") == status and
                    ready(api, "team", gen), timeout, interval=0.1)


def test_a_lagging_replica_is_named_and_ready_returns_when_it_is_back(env, team):
    api, a, b = env["api"], env["a"], env["b"]
    b.proc.stop(sig=signal.SIGKILL)  # a crash: its Lease stays until it expires
    gen = set_team_groups(api, ["admins", "ops"])
    cond = wait_team_ready(api, gen, "False")
    assert cond["reason"] == "Propagating" and "authd-b" in cond["message"], cond
    b.start()
    wait_team_ready(api, gen, "True", 60)
    assert b.check("team.localhost", team["alice"])[0] == 200


def test_a_replica_that_cannot_answer_checks_yet_is_not_counted_as_enforcing(env, team):
    """A replica answers checks only once its revocation list is loaded too (503 before):
    while portcullis-revocations does not parse, a new replica has the config but its Lease
    must not say so, and Ready names it; once the list loads, Ready returns and it answers."""
    api = env["api"]
    bad = {"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "portcullis-revocations", "namespace": NS},
           "stringData": {"revocations.yaml": "revoked: [unclosed\n"}}
    c = WatchingAuthd("authd-c", env["kubeconfig"], env["issuer"], cookie_secret=COOKIE_SECRET)
    apply(api, bad)
    try:
        c.start()
        wait_for("authd-c refusing to decide",
                 lambda: c.check("team.localhost", team["alice"])[0] == 503, 30)
        gen = set_team_groups(api, ["admins", "qa"])
        cond = wait_team_ready(api, gen, "False")
        assert "authd-c" in cond["message"], cond
        assert c.check("team.localhost", team["alice"])[0] == 503
        api.kubectl("-n", NS, "delete", "secret", "portcullis-revocations")
        wait_team_ready(api, gen, "True", 60)
        assert c.check("team.localhost", team["alice"])[0] == 200
    finally:
        c.stop()
        api.kubectl("-n", NS, "delete", "secret", "portcullis-revocations", "--ignore-not-found")


def test_apiserver_restart_loses_nothing(env, team):
    api, a, b = env["api"], env["a"], env["b"]
    api.restart()
    apply(api, ph("restart", "restart.localhost", env["issuer"], ["admins"]))
    wait_for("restart Ready", lambda: (ready(api, "restart") or {}).get("status") == "True", 90,
             ignore=(OSError,))
    for r in (a, b):
        assert r.check("restart.localhost", accept="application/json")[0] == 401
        assert r.check("team.localhost", team["alice"])[0] == 200


def test_a_corrupted_shard_leaves_the_others_serving(env, team):
    """Somebody breaks one shard by hand: the replicas refuse that version, keep serving the
    version they had, and every other shard keeps serving."""
    api, a, b = env["api"], env["a"], env["b"]
    secs = json.loads(api.kubectl("get", "secret", "-n", NS, "-l",
                                  "portcullis.io/authd-config=shard", "-o", "json").stdout)
    holding = [s for s in secs["items"]
               if "apps/team" in base64.b64decode(s["data"]["hosts.yaml"]).decode()]
    assert len(holding) == 1
    shard = holding[0]["metadata"]["name"]
    gen = int(holding[0]["metadata"]["annotations"]["portcullis.io/generation"]) + 1000
    api.kubectl("patch", "secret", shard, "-n", NS, "--type=merge", "-p", json.dumps(
        {"metadata": {"annotations": {"portcullis.io/generation": str(gen)}},
         "data": {"hosts.yaml": base64.b64encode(b"hosts: [this is not: a host").decode()}}))
    xx = shard.rsplit("-", 1)[1]
    for r in (a, b):
        wait_for(f"{r.pod} rejects {shard}", lambda r=r: r.metric(
            f'portcullis_authd_config_shard_rejections_total{{shard="{xx}"}}') >= 1, 30)
    for r in (a, b):
        assert r.check("team.localhost", team["alice"])[0] == 200  # the old version
        assert r.check("new.localhost", accept="application/json")[0] == 401


def test_ten_thousand_protected_hosts_fit(env, tmp_path):
    """10,000 ProtectedHosts of an ordinary shape, rendered by the controller's own renderer
    (`render`, the code `run` uses) for an authd in a namespace of its own: every shard Secret
    is accepted by the apiserver, each well under the 1 MiB a Secret may hold, and an authd
    watching them serves all 10,000 hosts. (How fast the controller gets there is
    bench/propagation.sh's question.)"""
    api = env["api"]
    count, ns = 10000, "bulk-authd"
    docs = [ph(f"bulk-{i}", f"bulk-{i}.apps.example.com", env["issuer"],
               [f"team-{i % 50}-devs", f"team-{i % 50}-admins"]) for i in range(count)]
    src = tmp_path / "protected-hosts"  # a GitOps directory: 500 per file
    src.mkdir()
    for f in range(0, count, 500):
        (src / f"bulk-{f:05d}.yaml").write_text("\n---\n".join(json.dumps(d)
                                                             for d in docs[f:f + 500]))
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    out = tmp_path / "out"
    t0 = time.monotonic()
    subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "render", "-f", str(src), "-o",
                    str(out), "--allow-insecure-issuers", "--manifests-only",
                    "--authd-namespace", ns,
                    "--secret-file", f"{APPS}/oidc/client-secret={secret}"],
                   check=True, capture_output=True, timeout=300)
    shards = list(yaml.safe_load_all((out / "authd-config-secrets.yaml").read_text()))
    sizes = [len(d["stringData"]["hosts.yaml"].encode()) for d in shards]
    assert sum(d["stringData"]["hosts.yaml"].count(f"id: {APPS}/bulk-") for d in shards) == count
    assert max(sizes) < 1024 * 1024
    api.kubectl("create", "namespace", ns)
    rbac = (REPO / "deploy" / "authd-rbac.yaml").read_text().replace("portcullis-system", ns)
    api.kubectl("apply", "-f", "-", input=rbac)
    api.kubectl("apply", "-f", str(out / "authd-config-secrets.yaml"))
    print(f"\n{count} ProtectedHosts: {len(shards)} shards, {sum(sizes)} bytes "
          f"({sum(sizes) / count:.0f} per host), largest {max(sizes)}, rendered and applied in "
          f"{time.monotonic() - t0:.1f} s")
    bulk = WatchingAuthd("bulk", api.service_account_kubeconfig(ns, "portcullis-authd"),
                         env["issuer"], cookie_secret=COOKIE_SECRET,
                         args=("--config-namespace", ns))
    try:
        bulk.start()
        wait_for("authd to serve all of them", lambda: bulk.readyz()[0] == 200, 120)
        for i in (0, count // 2, count - 1):
            assert bulk.check(f"bulk-{i}.apps.example.com", accept="application/json")[0] == 401
        assert bulk.check("elsewhere.example.com", accept="application/json")[0] == 403
    finally:
        bulk.stop()
