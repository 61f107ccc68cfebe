#!/usr/bin/env python3
"""The mesh of bench/authd.sh: a real kube-apiserver and istiod (the e2e harness's, built and
cached by scripts/build-e2e-tools.sh) configuring three ingress gateway Envoys in front of
the bench's nginx, the chain a user runs:

  none   no authorization policy: Envoy → nginx (the ceiling)
  authd  CUSTOM policy, provider `portcullis` (the controller's provider, docs/design.md §4.2)
         → portcullis-authd, then nginx
  o2p    CUSTOM policy, provider `oauth2-proxy` (oauth2-proxy's documented Istio provider)
         → oauth2-proxy, then nginx

  authd_mesh.py --state FILE --host HOST --nginx-port P --authd-port P --o2p-port P
                [--cpu N] [--log-level warning]

Each Envoy runs pinned to core N (taskset) with --concurrency 1. Once every gateway has its
listener (and the two CUSTOM ones their ext_authz filter), FILE gets one JSON object:
{"none"|"authd"|"o2p": {"port", "admin", "pid"}, "xds_rejects"}. Then it runs until SIGTERM
or SIGINT and stops everything it started, by pid.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.harness.authd import MESH_PROVIDER  # noqa: E402
from e2e.harness.istio import (EXT_AUTHZ, ISTIO_NS, MESH_DEFAULTS, IngressGateway, Istiod,  # noqa: E402
                               apply, custom_policy, install_mesh_crds, mesh_configmap,
                               service_entry)
from e2e.harness.kube import ApiServer  # noqa: E402

AUTHD_SERVICE = "portcullis-authd.portcullis-system.svc.cluster.local"
O2P_SERVICE = "oauth2-proxy.oauth2-proxy.svc.cluster.local"
# oauth2-proxy's own Istio guide: the provider most installs copy.
O2P_PROVIDER = {
    "service": O2P_SERVICE, "port": 4180,
    "includeRequestHeadersInCheck": ["authorization", "cookie"],
    "headersToUpstreamOnAllow": ["authorization", "path", "x-auth-request-user",
                                 "x-auth-request-email", "x-auth-request-access-token"],
    "headersToDownstreamOnDeny": ["content-type", "set-cookie"],
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state", required=True)
    p.add_argument("--host", required=True)
    for k in ("nginx-port", "authd-port", "o2p-port"):
        p.add_argument(f"--{k}", type=int, required=True)
    p.add_argument("--cpu", default="1")
    p.add_argument("--log-level", default="warning")
    a = p.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    api, istiod, gateways = ApiServer(), None, {}
    try:
        api.start()
        install_mesh_crds(api)
        for ns in (ISTIO_NS, "portcullis-system", "oauth2-proxy"):
            api.kubectl("create", "namespace", ns)
        mesh = {**MESH_DEFAULTS, "extensionProviders": [
            {"name": "portcullis", "envoyExtAuthzHttp": {
                "service": AUTHD_SERVICE, "port": 4180, **MESH_PROVIDER}},
            {"name": "oauth2-proxy", "envoyExtAuthzHttp": O2P_PROVIDER}]}
        apply(api, mesh_configmap(mesh),
              service_entry("portcullis-authd", "portcullis-system", AUTHD_SERVICE, 4180,
                            a.authd_port),
              service_entry("oauth2-proxy", "oauth2-proxy", O2P_SERVICE, 4180, a.o2p_port))
        istiod = Istiod(api).start()
        for name, provider in (("none", None), ("authd", "portcullis"), ("o2p", "oauth2-proxy")):
            labels = {"istio": f"gw-{name}"}
            if provider:
                apply(api, custom_policy(f"gw-{name}", provider, labels, [a.host]))
            gw = IngressGateway(istiod, ("127.0.0.1", a.nginx_port), name=f"gw-{name}",
                                labels=labels, upstream_host="app.bench.svc.cluster.local",
                                upstream_port=80, log_level=a.log_level,
                                wrapper=["taskset", "-c", a.cpu])
            gateways[name] = gw
            gw.start()
            if provider:
                gw.wait_filters(lambda fs: any(f.get("name") == EXT_AUTHZ for f in fs),
                                f"istiod to give gw-{name} its ext_authz filter")
        state = {n: {"port": g.port, "admin": g.proxy.admin_port, "pid": g.pid}
                 for n, g in gateways.items()}
        state["xds_rejects"] = istiod.xds_rejects()
        tmp = Path(a.state + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(a.state)
        print(f"authd_mesh: gateways up: {json.dumps(state)}", flush=True)
        while not stop.wait(1):
            if not all(g.proxy.proc.alive() for g in gateways.values()) or not istiod.proc.alive():
                print("authd_mesh: a gateway Envoy or istiod exited", file=sys.stderr)
                return 1
        return 0
    finally:
        for g in gateways.values():
            g.stop()
        if istiod:
            istiod.stop()
        api.stop()


if __name__ == "__main__":
    sys.exit(main())
