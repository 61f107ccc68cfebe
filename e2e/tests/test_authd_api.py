"""authd in API mode (--watch-config, issue 8): its hosts come from the config Secrets
portcullis-authd-config-<xx> through a real kube-apiserver (e2e/harness/kube.py), and each
replica says in its Lease portcullis-authd-<pod> which shard generations it enforces.

Two replicas run with the token of ServiceAccount portcullis-authd bound by deploy/authd-rbac.yaml
(so the Role is what lets them work), one with a head file (--config, hosts empty), one with flags
only, behind a real OpenID Provider (npm oidc-provider). Python speaks like Envoy's ext_authz to
authd's Envoy door. Shards are written with kubectl. Every wait is bounded; nothing is timed.
"""

import base64
import http.client
import json
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.authd import WatchingAuthd  # noqa: E402
from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.peers import OidcProvider  # noqa: E402
from e2e.harness.proc import AUTHD, REPO, Proc, free_port, skip_e2e, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NS = "portcullis-system"
CLIENT, SECRET = "echo", "echo-client-secret"
COOKIE_SECRET = "0123456789abcdef0123456789abcdef-api-mode\n"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
REJECTIONS = 'portcullis_authd_config_shard_rejections_total{shard="%s"}'


class Replica(WatchingAuthd):
    def __init__(self, pod, kubeconfig, issuer, *, head_file):
        super().__init__(pod, kubeconfig, issuer, cookie_secret=COOKIE_SECRET, head_file=head_file)


def entry(name, host, issuer, groups):
    """One hosts[] entry, compact like the controller writes it (defaults omitted)."""
    return (f"  - id: apps/{name}\n    hosts: [{host}]\n"
            f"    oidc: {{issuerURL: \"{issuer}\", clientID: {CLIENT}, clientSecret: {SECRET}}}\n"
            f"    access: {{allowedGroups: [{groups}]}}\n")


def shard_manifest(xx, generation, hosts_yaml):
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"portcullis-authd-config-{xx}", "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "portcullis",
                                "portcullis.io/authd-config": "shard"},
                     "annotations": {"portcullis.io/generation": str(generation)}},
        "data": {"hosts.yaml": base64.b64encode(hosts_yaml.encode()).decode()},
    })


def put_shard(api, xx, generation, hosts_yaml):
    api.kubectl("apply", "--server-side", "--field-manager=portcullis", "-f", "-",
                input=shard_manifest(xx, generation, hosts_yaml))


def lease(api, name):
    status, body = api.get(f"{LEASES}/{name}")
    return json.loads(body) if status == 200 else None


def annotations(api, name):
    lz = lease(api, name)
    return (lz or {}).get("metadata", {}).get("annotations", {})


def shard_set(text):
    return dict(p.split("=", 1) for p in text.split(",") if p)


def wait_leases(api, replicas, what, pred, timeout=60):
    """Until every replica's Lease annotations satisfy pred(loaded, rejected) (dicts)."""
    def probe():
        anns = [annotations(api, r.lease) for r in replicas]
        return all(a and pred(shard_set(a.get("portcullis.io/loaded", "")),
                              shard_set(a.get("portcullis.io/rejected", ""))) for a in anns)
    wait_for(what, probe, timeout, interval=0.05, ignore=(OSError,))


def user_header(headers):
    return dict((k.lower(), v) for k, v in headers).get("x-auth-request-user")


@pytest.fixture(scope="module")
def env(api_server):
    api = api_server
    api.kubectl("create", "namespace", NS)
    api.kubectl("apply", "-f", str(REPO / "deploy" / "authd-rbac.yaml"))
    api.kubectl("create", "serviceaccount", "unbound", "-n", NS)
    kubeconfig = api.service_account_kubeconfig(NS, "portcullis-authd")
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    a = Replica("authd-a", kubeconfig, issuer, head_file=True)
    b = Replica("authd-b", kubeconfig, issuer, head_file=False)
    idp = OidcProvider([{"clientId": CLIENT, "secret": SECRET,
                         "redirectUris": [f"http://base.localhost:{a.port}/oauth2/callback"]}],
                       port=idp_port)
    # The first shard exists before authd starts: the first list brings it.
    put_shard(api, "00", 1, "hosts:\n" + entry("base", "base.localhost", issuer, "admins"))
    try:
        idp.start()
        a.start()
        b.start()
        yield {"api": api, "a": a, "b": b, "issuer": issuer, "idp": idp}
    finally:
        a.stop()
        b.stop()
        idp.stop()


@pytest.fixture(scope="module")
def alice(env):
    wait_for("replica a ready", lambda: env["a"].readyz()[0] == 200, 30)
    return env["a"].login("base.localhost", "alice")


def test_ready_and_leases_after_the_first_list(env):
    api, a, b = env["api"], env["a"], env["b"]
    for r in (a, b):
        wait_for(f"{r.pod} ready", lambda r=r: r.readyz()[0] == 200, 30)
    wait_leases(api, [a, b], "both Leases show 00=1", lambda ld, rj: ld == {"00": "1"} and not rj)
    for r in (a, b):
        lz = lease(api, r.lease)
        assert lz["metadata"]["labels"] == {"portcullis.io/authd-replica": "true"}
        assert lz["spec"]["holderIdentity"] == r.pod
        assert lz["spec"]["leaseDurationSeconds"] == 15
        assert r.metric('portcullis_authd_config_shards{state="loaded"}') == 1
        assert r.metric("portcullis_authd_config_last_load_timestamp_seconds") > 0


def test_not_ready_until_it_may_list(env):
    """Without the Role the list is forbidden: not ready, and no host is served; bound to the
    Role, the first full list makes it ready."""
    api = env["api"]
    r = Replica("authd-unbound", api.service_account_kubeconfig(NS, "unbound"), env["issuer"],
                head_file=False)
    try:
        r.start()
        wait_for("a forbidden list", lambda: "list_failed" in r.log() and "forbidden" in r.log(),
                 20)
        assert r.readyz() == (503, {"ready": False, "reason": "config shards not listed yet"})
        assert r.check("base.localhost")[0] == 503
        api.kubectl("create", "rolebinding", "unbound", "-n", NS, "--role=portcullis-authd",
                    f"--serviceaccount={NS}:unbound")
        wait_for("ready once bound", lambda: r.readyz()[0] == 200, 60)
        assert r.check("base.localhost")[0] == 302  # the shard's host: login
    finally:
        r.stop()
        api.kubectl("delete", "rolebinding", "unbound", "-n", NS)
    wait_for("the unbound replica's Lease deleted", lambda: lease(api, r.lease) is None, 10)


def test_new_shard_is_enforced_at_both_replicas_once_the_leases_show_it(env, alice):
    api, a, b, issuer = env["api"], env["a"], env["b"], env["issuer"]
    for r in (a, b):
        assert r.check("new.localhost", alice)[0] == 403  # unknown host
    started = time.monotonic()
    put_shard(api, "1a", 1, "hosts:\n" + entry("new", "new.localhost", issuer, "admins")
              + entry("deny", "deny.localhost", issuer, "nobody"))
    wait_leases(api, [a, b], "both Leases show 1a=1", lambda ld, rj: ld.get("1a") == "1")
    print(f"\npropagation: kubectl apply -> both Leases show 1a=1: "
          f"{time.monotonic() - started:.3f} s")
    for r in (a, b):
        status, headers = r.check("new.localhost", alice)
        assert status == 200 and user_header(headers), (r.pod, status)
        assert r.check("deny.localhost", alice)[0] == 403, r.pod
        assert r.check("base.localhost", alice)[0] == 200, r.pod


def test_corrupt_shard_is_rejected_alone(env, alice):
    api, a, b, issuer = env["api"], env["a"], env["b"], env["issuer"]
    offsets = {r.pod: r.log_size() for r in (a, b)}
    put_shard(api, "1a", 2, "hosts:\n  - id: apps/new\n    hosts: [new.localhost\n")
    wait_leases(api, [a, b], "both Leases reject 1a=2",
                lambda ld, rj: rj == {"1a": "2"} and ld == {"00": "1", "1a": "1"})
    for r in (a, b):
        # The version loaded before keeps serving, and so does every other shard.
        assert r.check("new.localhost", alice)[0] == 200, r.pod
        assert r.check("deny.localhost", alice)[0] == 403, r.pod
        assert r.check("base.localhost", alice)[0] == 200, r.pod
        assert r.metric(REJECTIONS % "1a") == 1
        assert r.metric('portcullis_authd_config_shards{state="rejected"}') == 1
        log = r.log_since(offsets[r.pod])
        assert "event=config_shard_rejected shard=portcullis-authd-config-1a generation=2" in log
        assert 'error="portcullis-authd-config-1a/hosts.yaml:4:' in log, log
        assert "echo-client-secret" not in r.log()
    # A shard stealing another's host is refused too; the lower shard keeps the host.
    put_shard(api, "2c", 1, "hosts:\n" + entry("thief", "base.localhost", issuer, "nobody"))
    wait_leases(api, [a, b], "both Leases reject 2c=1", lambda ld, rj: rj.get("2c") == "1")
    for r in (a, b):
        assert r.check("base.localhost", alice)[0] == 200, r.pod
        assert r.metric(REJECTIONS % "2c") == 1
        assert "already protected by shard 00" in r.log_since(offsets[r.pod])
    # Fixed: loaded again, nothing rejected.
    put_shard(api, "1a", 3, "hosts:\n" + entry("new", "new.localhost", issuer, "nobody"))
    api.kubectl("delete", "secret", "portcullis-authd-config-2c", "-n", NS)
    wait_leases(api, [a, b], "both Leases load 1a=3",
                lambda ld, rj: ld == {"00": "1", "1a": "3"} and not rj)
    for r in (a, b):
        assert r.check("new.localhost", alice)[0] == 403, r.pod  # its policy changed
        assert r.metric('portcullis_authd_config_shards{state="rejected"}') == 0


def test_apiserver_restart_converges(env, alice):
    """Changes made right after the apiserver comes back reach both replicas: nothing the
    watch missed while it reconnected is lost."""
    api, a, b, issuer = env["api"], env["a"], env["b"], env["issuer"]
    renewed = {r.pod: lease(api, r.lease)["spec"]["renewTime"] for r in (a, b)}
    api.restart()
    api.kubectl("delete", "secret", "portcullis-authd-config-1a", "-n", NS)
    for xx in ("30", "31", "32"):
        put_shard(api, xx, 7, "hosts:\n" + entry(f"app{xx}", f"app{xx}.localhost", issuer,
                                                 "admins"))
    wait_leases(api, [a, b], "both Leases converge",
                lambda ld, rj: ld == {"00": "1", "30": "7", "31": "7", "32": "7"} and not rj,
                timeout=90)
    for r in (a, b):
        assert lease(api, r.lease)["spec"]["renewTime"] != renewed[r.pod]
        assert r.check("new.localhost", alice)[0] == 403  # its shard is gone: unknown host
        for xx in ("30", "31", "32"):
            status, headers = r.check(f"app{xx}.localhost", alice)
            assert status == 200 and user_header(headers), (r.pod, xx, status)


def test_stopped_replica_deletes_its_lease_and_a_killed_one_expires(env):
    api, a, b = env["api"], env["a"], env["b"]
    assert b.proc.stop() == 0
    assert lease(api, b.lease) is None  # deleted before the process exited
    assert lease(api, a.lease) is not None
    a.proc.stop(sig=signal.SIGKILL)
    held = lease(api, a.lease)["spec"]
    # A reader sees it expire: renewTime + leaseDurationSeconds passes with no renewal.
    wait_for("the killed replica's Lease to expire", lambda: lease_expired(api, a.lease), 40,
             interval=0.5)
    assert lease(api, a.lease)["spec"]["holderIdentity"] == held["holderIdentity"]


def lease_expired(api, name):
    spec = lease(api, name)["spec"]
    renew = time.mktime(time.strptime(spec["renewTime"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return time.time() > renew + spec["leaseDurationSeconds"]
