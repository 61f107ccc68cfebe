"""The shared Kubernetes client (common/src/k8s_*.c) against a real kube-apiserver.

Drives common/tests/k8s_probe (a test tool built in the build tree's common/) and checks
what it does with kubectl: watches see ADDED/MODIFIED/DELETED and survive an apiserver restart,
server-side apply creates and updates with field manager "portcullis", errors keep their
Status message and code, Events are folded with a count, and two Lease contenders elect
exactly one leader with failover after a kill and at once after a clean stop.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.kube import ApiServer, api_server  # noqa: E402,F401  (fixture)
from e2e.harness.proc import CONTROLLER, skip_e2e, stop_process  # noqa: E402

pytestmark = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")

NS = "k8s-client"
K8S_ENOTFOUND = -1005


def probe_path() -> str:
    """k8s_probe sits in the build tree's common/, a sibling of controller/."""
    if os.environ.get("PORTCULLIS_K8S_PROBE"):
        return os.environ["PORTCULLIS_K8S_PROBE"]
    path = CONTROLLER.parent.parent / "common" / "k8s_probe"
    assert path.exists(), f"{path} is missing: build the k8s_probe target first"
    return str(path)


class Probe:
    """A long-running k8s_probe (watch or lease) whose JSON lines are read on a thread."""

    def __init__(self, api, *args, env=None, kubeconfig=None):
        self.lines: "queue.Queue[dict]" = queue.Queue()
        self.proc = subprocess.Popen(
            [probe_path(), "--kubeconfig", kubeconfig or api.kubeconfig, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # stopped by its pid in stop(), not by a Ctrl-C
        )
        self.stderr = []
        self.readers = [threading.Thread(target=f, daemon=True) for f in (self._read, self._read_err)]
        for t in self.readers:
            t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _next(self, deadline):
        """The next line if one comes before deadline, else None."""
        try:
            return self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def expect(self, pred, timeout=20.0, what="event"):
        """The first line matching pred (earlier lines are consumed)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            ev = self._next(deadline)
            if ev is None:
                break
            seen.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(
            f"no {what} within {timeout}s; saw {seen}; stderr: {''.join(self.stderr)[-2000:]}"
        )

    def quiet(self, pred, seconds):
        """Asserts no line matching pred arrives for the given time."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ev = self._next(deadline)
            if ev is None:
                return
            assert not pred(ev), f"unexpected {ev}"

    def stop(self, sig=signal.SIGTERM):
        stop_process(self.proc, timeout=15, sig=sig)
        for t in self.readers:
            t.join(timeout=5)
        return self.proc.returncode


def run_probe(api, *args):
    proc = subprocess.run(
        [probe_path(), "--kubeconfig", api.kubeconfig, *args],
        capture_output=True, text=True, timeout=60,
    )
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]
    return proc.returncode, lines


def kget(api, *args):
    return json.loads(api.kubectl("get", "-o", "json", *args).stdout)


def event(name, typ):
    return lambda ev: ev.get("type") == typ and ev.get("name") == name


@pytest.fixture(scope="module")
def api(api_server):
    api_server.kubectl("create", "namespace", NS)
    return api_server


def test_watch_sees_added_modified_deleted(api):
    api.kubectl("create", "configmap", "pre", "-n", NS, "--from-literal=k=0")
    w = Probe(api, "watch", "v1", "configmaps", NS)
    try:
        w.expect(event("pre", "ADDED"), what="ADDED from the initial list")
        w.expect(lambda ev: ev["type"] == "SYNCED", what="SYNCED")
        api.kubectl("create", "configmap", "w1", "-n", NS, "--from-literal=k=1")
        added = w.expect(event("w1", "ADDED"))
        assert added["data"] == {"k": "1"} and added["namespace"] == NS
        api.kubectl("patch", "configmap", "w1", "-n", NS, "-p", '{"data":{"k":"2"}}')
        mod = w.expect(event("w1", "MODIFIED"))
        assert mod["data"] == {"k": "2"}
        assert int(mod["rv"]) > int(added["rv"])
        api.kubectl("delete", "configmap", "w1", "-n", NS)
        w.expect(event("w1", "DELETED"))
    finally:
        assert w.stop() == 0


def test_metadata_only_watch_never_carries_data(api):
    """What the controller's Secret watch relies on: the apiserver answers the list and the
    stream as PartialObjectMetadata, so a Secret's data never reaches the watcher."""
    api.kubectl("create", "secret", "generic", "meta-pre", "-n", NS, "--from-literal=k=secret0")
    w = Probe(api, "watch", "v1", "secrets", NS, env={"K8S_PROBE_METADATA": "1"})
    try:
        pre = w.expect(event("meta-pre", "ADDED"), what="ADDED from the initial list")
        w.expect(lambda ev: ev["type"] == "SYNCED", what="SYNCED")
        api.kubectl("create", "secret", "generic", "meta-1", "-n", NS, "--from-literal=k=secret1")
        added = w.expect(event("meta-1", "ADDED"))
        api.kubectl("patch", "secret", "meta-1", "-n", NS, "-p", '{"stringData":{"k":"secret2"}}')
        mod = w.expect(event("meta-1", "MODIFIED"))
        for ev in (pre, added, mod):
            assert ev.get("data") is None and ev["kind"] == "PartialObjectMetadata", ev
        assert int(mod["rv"]) > int(added["rv"])
        api.kubectl("delete", "secret", "meta-1", "-n", NS)
        w.expect(event("meta-1", "DELETED"))
    finally:
        assert w.stop() == 0


def test_apply_creates_then_updates_with_field_manager(api, tmp_path):
    obj = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": NS, "labels": {"app": "x"}},
        "data": {"a": "1"},
    }
    f = tmp_path / "cm.json"
    f.write_text(json.dumps(obj))
    rc, out = run_probe(api, "apply", "v1", "configmaps", str(f))
    assert (rc, out[-1]["rc"]) == (0, 0), out
    cm = kget(api, "configmap", "ssa", "-n", NS, "--show-managed-fields")
    assert cm["data"] == {"a": "1"}
    managers = {(m["manager"], m["operation"]) for m in cm["metadata"]["managedFields"]}
    assert ("portcullis", "Apply") in managers

    # Someone else takes the field; a forced apply takes it back.
    api.kubectl("patch", "configmap", "ssa", "-n", NS, "--field-manager=other",
                "-p", '{"data":{"a":"other"}}')
    obj["data"] = {"a": "2", "b": "3"}
    f.write_text(json.dumps(obj))
    rc, out = run_probe(api, "apply", "v1", "configmaps", str(f))
    assert (rc, out[-1]["rc"]) == (0, 0), out
    assert kget(api, "configmap", "ssa", "-n", NS)["data"] == {"a": "2", "b": "3"}

    # Fields portcullis stops applying are removed.
    obj["data"] = {"b": "3"}
    f.write_text(json.dumps(obj))
    rc, out = run_probe(api, "apply", "v1", "configmaps", str(f))
    assert rc == 0, out
    assert kget(api, "configmap", "ssa", "-n", NS)["data"] == {"b": "3"}


def test_errors_carry_status_message_and_code(api, tmp_path):
    rc, out = run_probe(api, "get", "v1", "configmaps", NS, "absent")
    assert rc == 1
    assert out[-1]["rc"] == K8S_ENOTFOUND
    assert out[-1]["error"] == 'configmaps "absent" not found (HTTP 404 NotFound)'
    rc, out = run_probe(api, "delete", "v1", "configmaps", NS, "absent")
    assert out[-1]["rc"] == K8S_ENOTFOUND

    bad = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "Not_Valid", "namespace": NS}}
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    rc, out = run_probe(api, "apply", "v1", "configmaps", str(f))
    assert rc == 1 and out[-1]["rc"] == -1103, out  # K8S_EINVALID
    assert "HTTP 422 Invalid" in out[-1]["error"]


def test_events_are_recorded_and_counted(api):
    api.kubectl("create", "configmap", "evt", "-n", NS)
    for _ in range(2):
        rc, out = run_probe(api, "event", "v1", "configmaps", NS, "evt", "Warning",
                            "SecretNotFound", "secret 'x' not found")
        assert rc == 0, out
    events = kget(api, "events", "-n", NS)["items"]
    ours = [e for e in events if e["involvedObject"].get("name") == "evt"]
    assert len(ours) == 1, ours
    ev = ours[0]
    assert ev["count"] == 2
    assert ev["reason"] == "SecretNotFound" and ev["type"] == "Warning"
    assert ev["message"] == "secret 'x' not found"
    assert ev["involvedObject"]["kind"] == "ConfigMap"
    assert ev["involvedObject"]["uid"]
    assert ev["reportingComponent"] == "portcullis-controller"
    assert ev["source"]["component"] == "portcullis-controller"
    assert ev["firstTimestamp"] and ev["lastTimestamp"]


def test_watch_reconnects_after_apiserver_restart(api):
    w = Probe(api, "watch", "v1", "configmaps", NS)
    try:
        w.expect(lambda ev: ev["type"] == "SYNCED")
        api.kubectl("create", "configmap", "r1", "-n", NS)
        w.expect(event("r1", "ADDED"))
        api.restart()
        api.kubectl("create", "configmap", "r2", "-n", NS)
        api.kubectl("delete", "configmap", "r1", "-n", NS)
        w.expect(event("r2", "ADDED"), timeout=60, what="ADDED after the restart")
        w.expect(event("r1", "DELETED"), timeout=30, what="DELETED after the restart")
    finally:
        assert w.stop() == 0


def leaders(probes, seconds):
    """Reads LEADING/STOPPED lines of every probe for a while; who leads at the end."""
    state = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, p in probes.items():
            try:
                ev = p.lines.get_nowait()
            except queue.Empty:
                continue
            state[name] = ev["type"] == "LEADING"
        time.sleep(0.05)
    return {n for n, lead in state.items() if lead}


def test_lease_elects_one_leader_and_fails_over(api):
    probes = {"a": Probe(api, "lease", "default", "k8s-client-test", "a")}
    try:
        probes["b"] = Probe(api, "lease", "default", "k8s-client-test", "b")
        now = leaders(probes, 8)
        assert len(now) == 1, now
        first = now.pop()
        other = "b" if first == "a" else "a"
        lease = kget(api, "lease", "k8s-client-test", "-n", "default")
        assert lease["spec"]["holderIdentity"] == first
        assert lease["spec"]["leaseDurationSeconds"] == 15

        # Killed without releasing: the other takes over once the lease expires.
        killed_at = time.monotonic()
        probes[first].stop(signal.SIGKILL)
        probes[other].expect(lambda ev: ev["type"] == "LEADING", timeout=25,
                             what="takeover after kill")
        took = time.monotonic() - killed_at
        assert took <= 20.5, took
        lease = kget(api, "lease", "k8s-client-test", "-n", "default")
        assert lease["spec"]["holderIdentity"] == other
        assert lease["spec"]["leaseTransitions"] >= 1

        # A clean stop releases the lease: a new contender leads at once.
        c = Probe(api, "lease", "default", "k8s-client-test", "c")
        probes["c"] = c
        c.quiet(lambda ev: ev["type"] == "LEADING", 3)
        stopped_at = time.monotonic()
        assert probes[other].stop() == 0
        probes[other].expect(lambda ev: ev["type"] == "STOPPED", timeout=2)
        c.expect(lambda ev: ev["type"] == "LEADING", timeout=6, what="takeover after release")
        assert time.monotonic() - stopped_at < 6
    finally:
        for p in probes.values():
            p.stop()


class UncachedApiServer(ApiServer):
    """Watches served by etcd itself, so an old resourceVersion meets etcd's compaction."""

    def _apiserver_args(self):
        return super()._apiserver_args() + ["--watch-cache=false"]


def etcd_compact(api):
    """Compacts etcd to its current revision through its JSON gateway."""
    def call(path, body):
        req = urllib.request.Request(
            f"http://127.0.0.1:{api.etcd_port}{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    rev = call("/v3/kv/range", {"key": "AA=="})["header"]["revision"]
    call("/v3/kv/compaction", {"revision": rev, "physical": True})


def test_expired_resource_version_relists():
    """Watching from a compacted version: a watch ERROR event with 410, then a relist."""
    with UncachedApiServer() as api:
        api.kubectl("create", "configmap", "old", "-n", "default")
        etcd_compact(api)
        w = Probe(api, "watch", "v1", "configmaps", "default", env={"K8S_PROBE_RV": "1"})
        try:
            w.expect(event("old", "ADDED"), what="ADDED from the relist after 410")
            w.expect(lambda ev: ev["type"] == "SYNCED")
            api.kubectl("create", "configmap", "new", "-n", "default")
            w.expect(event("new", "ADDED"))
        finally:
            assert w.stop() == 0
        log = "".join(w.stderr)
        assert "event=watch_relist" in log and "HTTP 410 Expired" in log, log


def test_streams_rotate_without_relisting(api):
    """Short server timeouts and idle cuts resume from the last version: no relist, no loss."""
    w = Probe(api, "watch", "v1", "configmaps", NS,
              env={"K8S_PROBE_TIMEOUT": "2", "K8S_PROBE_LOW_SPEED": "1"})
    try:
        w.expect(lambda ev: ev["type"] == "SYNCED")
        for i in range(3):
            time.sleep(2.5)  # at least one rotation in between
            api.kubectl("create", "configmap", f"rot{i}", "-n", NS)
            w.expect(event(f"rot{i}", "ADDED"))
        w.quiet(lambda ev: ev["type"] == "SYNCED", 1)
    finally:
        assert w.stop() == 0


def test_token_file_is_reread_when_rotated(api, tmp_path):
    """A tokenFile credential is read again when the server says 401 (kubelet rotation)."""
    token = tmp_path / "token"
    token.write_text("not-a-valid-token\n")
    cfg = json.loads(Path(api.kubeconfig).read_text())
    cfg["users"][0]["user"] = {"tokenFile": str(token)}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(cfg))

    w = Probe(api, "watch", "v1", "configmaps", NS, kubeconfig=str(kubeconfig))
    try:
        time.sleep(2)
        assert w.lines.empty()
        token.write_text(api.token + "\n")
        w.expect(lambda ev: ev["type"] == "SYNCED", timeout=15, what="SYNCED after rotation")
    finally:
        assert w.stop() == 0
    assert "HTTP 401" in "".join(w.stderr)
