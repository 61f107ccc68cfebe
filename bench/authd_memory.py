#!/usr/bin/env python3
"""authd's memory with many hosts (issue 8 "Benchmark": authd peak RSS < 32 MB at 10,000
ProtectedHosts), against a real kube-apiserver:

    bench/authd_memory.py BUILD_DIR [--counts 1,2000,10000]

For each count: COUNT ProtectedHosts of one shape (one host, two groups, everything else
default) rendered by `portcullis-controller render` into the config shard Secrets, applied to
the apiserver, then `portcullis-authd --watch-config` started on them; once its metrics show
every shard loaded, its peak (VmHWM) and current RSS. The 1-host row is the baseline of the
same run; per host = (peak - baseline) / (count - 1). Exit status 1 when a count could not be
measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.harness.kube import ApiServer  # noqa: E402
from e2e.harness.proc import Proc, free_port  # noqa: E402

NS = "portcullis-system"


def protected_hosts(n: int) -> list[str]:
    return [json.dumps({
        "apiVersion": "portcullis.io/v1alpha1", "kind": "ProtectedHost",
        "metadata": {"name": f"ph-{i}", "namespace": "apps",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"hosts": [f"app-{i}.apps.example.com"],
                 "oidc": {"issuerURL": "https://idp.example.com/realms/main", "clientID": "bench",
                          "clientSecretRef": {"name": "oidc", "key": "client-secret"}},
                 "access": {"allowedGroups": ["team-admins", "team-devs"]}}}) for i in range(n)]


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def shards_loaded(admin: int) -> int:
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2).read().decode()
    for line in body.splitlines():
        if line.startswith("portcullis_authd_config_shards{") and 'state="loaded"' in line:
            return int(float(line.split()[-1]))
    return 0


def measure(api: ApiServer, build: Path, work: Path, n: int) -> tuple[int, int, float]:
    """(peak kB, current kB, seconds to load) of an authd watching n rendered hosts."""
    d = work / f"n{n}"
    (d / "in").mkdir(parents=True)
    docs = protected_hosts(n)
    for j in range(0, n, 500):  # render's YAML loader bounds one file; a directory holds any
        (d / "in" / f"p{j:06d}.yaml").write_text("\n---\n".join(docs[j:j + 500]) + "\n")
    (d / "secret").write_text("bench-client-secret")
    subprocess.run([str(build / "controller/portcullis-controller"), "render", "-f", str(d / "in"),
                    "-o", str(d / "out"), "--secret-file", f"apps/oidc/client-secret={d / 'secret'}"],
                   check=True, capture_output=True, timeout=600)
    api.kubectl("delete", "secret", "-n", NS, "-l", "portcullis.io/authd-config=shard",
                "--ignore-not-found")
    api.kubectl("apply", "--server-side", "-f", str(d / "out" / "authd-config-secrets.yaml"))
    (d / "cookie").write_text(os.urandom(24).hex())
    admin = free_port()
    proc = Proc(f"authd-{n}", [str(build / "authd/portcullis-authd"),
                               "--listen", f"127.0.0.1:{free_port()}",
                               "--admin-listen", f"127.0.0.1:{admin}",
                               "--cookie-secret-file", str(d / "cookie"), "--watch-config",
                               "--kubeconfig", api.kubeconfig, "--config-namespace", NS],
                env={"POD_NAME": f"mem-{n}"}, log_path=d / "authd.log").start()
    try:
        t0 = time.monotonic()
        want = (d / "out" / "authd-config-secrets.yaml").read_text().count("\nkind: Secret\n")
        deadline = t0 + 180
        while time.monotonic() < deadline:
            try:
                if shards_loaded(admin) >= want:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{n} hosts: authd did not load every shard in 180 s")
        loaded = time.monotonic() - t0
        time.sleep(2)  # the Lease write and anything else that follows a load
        return status_kb(proc.pid, "VmHWM"), status_kb(proc.pid, "VmRSS"), loaded
    finally:
        proc.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("build", type=Path)
    ap.add_argument("--counts", default="1,2000,10000")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows, rc = [], 0
    with tempfile.TemporaryDirectory() as tmp, ApiServer() as api:
        api.kubectl("create", "namespace", NS)
        for n in counts:
            try:
                rows.append((n, *measure(api, args.build.resolve(), Path(tmp), n)))
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                print(f"[bench/authd_memory] FAILED at {n} hosts: {e}", file=sys.stderr)
                rc = 1
    base = next((r[1] for r in rows if r[0] == 1), None)
    print("\nauthd --watch-config memory (peak = VmHWM)")
    print(f"  {'hosts':>6}  {'peak MB':>8}  {'now MB':>7}  {'load s':>6}  per host over 1 host")
    for n, peak, now, secs in rows:
        per = f"{(peak - base) * 1024 / (n - 1):7.0f} B" if base is not None and n > 1 else ""
        print(f"  {n:>6}  {peak / 1024:8.1f}  {now / 1024:7.1f}  {secs:6.1f}  {per}")
    print("  target: peak < 32 MB at 10,000 hosts")
    return rc


if __name__ == "__main__":
    sys.exit(main())
