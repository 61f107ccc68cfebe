"""A real istiod driving real Envoys on 127.0.0.1 (docs/design.md §6).

istiod is pilot-discovery built from the istio.io/istio module at the version
e2e/istio-validate links (scripts/build-e2e-tools.sh, cached by version and source hash).
It runs against the tests' kube-apiserver with every listener on loopback and plaintext
xDS, and configures the PyPI Envoy as an ingress gateway (or a sidecar) over ADS:

    api = ApiServer(); api.start(); install_mesh_crds(api)
    istiod = Istiod(api).start()
    apply(api, service_entry("echo", "test", "echo.test.svc.cluster.local", 8080, echo.port),
          gateway("gw", {"istio": "ingressgateway"}, port), virtual_service(...))
    envoy = Proxy(istiod, "istio-ingressgateway", {"istio": "ingressgateway"}).start()

What istiod makes is read back from Envoy (config dump: listeners, the ext_authz and RBAC
filters) and from istiod (pilot_total_xds_rejects: what Envoy refused).

Facts this relies on (all checked against a real run):
- A working directory without ./etc/istio/config/mesh makes istiod read the mesh from the
  `istio` ConfigMap in POD_NAMESPACE (plus SHARED_MESH_CONFIG's ConfigMap when set).
- ENABLE_CA_SERVER=false PILOT_CERT_PROVIDER=none INJECT_ENABLED=false and empty webhook
  names keep it from writing certificates and webhook configurations.
- Upstream Envoy refuses Istio-proxy-only filters: PILOT_ENABLE_METADATA_EXCHANGE=false,
  PILOT_ENABLE_ALPN_FILTER=false, and no Telemetry metrics provider (istio.stats).
- No istio-agent runs beside Envoy (no SDS), so the mesh config has enableAutoMtls: false.
- The apiserver refuses EndpointSlices at 127.0.0.1, so loopback upstreams (echo, authd)
  are ServiceEntries with static 127.0.0.1 endpoints; the gateway's Gateway server binds
  127.0.0.1 on a free port.

Every process is stopped by its pid (proc.Proc).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.parse
from pathlib import Path

import yaml

from .kube import ApiServer, e2e_tools
from .peers import _addr, _Peer, require_peers
from .proc import PeerError, Proc, free_port, http, metric_value, wait_for, work_dir

ISTIO_NS = "istio-system"
DOMAIN = "cluster.local"

# What istiod needs to run outside a cluster and drive an upstream (non-istio-proxy) Envoy.
ISTIOD_ENV = {
    "POD_NAMESPACE": ISTIO_NS,
    "POD_NAME": "istiod-e2e",
    "REVISION": "default",
    "CLUSTER_ID": "Kubernetes",
    "ENABLE_CA_SERVER": "false",
    "PILOT_CERT_PROVIDER": "none",
    "INJECT_ENABLED": "false",
    "VALIDATION_WEBHOOK_CONFIG_NAME": "",
    "INJECTION_WEBHOOK_CONFIG_NAME": "",
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "PILOT_ENABLE_ALPN_FILTER": "false",
    # Pushes follow a change at once (the tests wait for them, bounded).
    "PILOT_DEBOUNCE_AFTER": "10ms",
    "PILOT_DEBOUNCE_MAX": "200ms",
}

# The one mesh setting the tests' installs differ in from a default one: no istio-agent runs
# beside Envoy here to serve workload certificates over SDS, and with auto mTLS every
# cluster waits for them (Envoy never becomes ready). Plaintext to the loopback upstreams.
MESH_DEFAULTS = {"enableAutoMtls": False}

EXT_AUTHZ = "envoy.filters.http.ext_authz"
RBAC = "envoy.filters.http.rbac"
HCM = "envoy.filters.network.http_connection_manager"


def _dump(*docs: dict) -> str:
    return yaml.safe_dump_all([d for d in docs if d], sort_keys=False)


def apply(api: ApiServer, *docs: dict) -> None:
    """kubectl apply of the given objects."""
    api.kubectl("apply", "-f", "-", input=_dump(*docs))


def delete(api: ApiServer, *docs: dict) -> None:
    """kubectl delete of the given objects (missing ones are fine)."""
    api.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=_dump(*docs))


def install_mesh_crds(api: ApiServer, gateway_api: bool = False) -> None:
    """The Istio CRDs (and the Gateway API CRDs when asked) at the versions istiod links."""
    api.install_istio_crds()
    if gateway_api:
        api.install_istio_crds(e2e_tools()["PORTCULLIS_GATEWAY_API_CRDS"])


def ensure_namespace(api: ApiServer, name: str) -> None:
    r = api.kubectl("get", "namespace", name, check=False)
    if r.returncode != 0:
        api.kubectl("create", "namespace", name)


# ---------------------------------------------------------------------------------------
# Istio objects for loopback peers

def service_entry(name: str, namespace: str, host: str, port: int, target_port: int,
                  address: str = "127.0.0.1", protocol: str = "HTTP") -> dict:
    """A mesh-internal service `host:port` whose one endpoint is address:target_port (the
    stand-in for a Service whose pods run on this machine)."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": port, "name": f"{protocol.lower()}-{port}", "protocol": protocol,
                       "targetPort": target_port}],
            "endpoints": [{"address": address, "ports": {f"{protocol.lower()}-{port}": target_port}}],
        },
    }


def gateway(name: str, selector: dict, port: int, *, namespace: str = ISTIO_NS,
            bind: str = "127.0.0.1", hosts: tuple = ("*",)) -> dict:
    """An Istio Gateway: one plaintext HTTP server on bind:port for the selected proxies."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": dict(selector), "servers": [{
            "port": {"number": port, "name": "http", "protocol": "HTTP"},
            "bind": bind, "hosts": list(hosts)}]},
    }


def virtual_service(name: str, gateways: list[str], destination: str, port: int, *,
                    namespace: str = ISTIO_NS, hosts: tuple = ("*",)) -> dict:
    """Every request for hosts through gateways goes to destination:port."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": list(hosts), "gateways": list(gateways), "http": [{
            "route": [{"destination": {"host": destination, "port": {"number": port}}}]}]},
    }


def mesh_configmap(mesh: dict | str, name: str = "istio", namespace: str = ISTIO_NS) -> dict:
    text = mesh if isinstance(mesh, str) else yaml.safe_dump(mesh, sort_keys=False)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": {"mesh": text}}


# ---------------------------------------------------------------------------------------
# istiod

class Istiod(_Peer):
    """pilot-discovery on 127.0.0.1 against api: plaintext xDS on grpc_port, /ready and
    /debug on http_port, /metrics on monitoring_port.

    shared_mesh_config: the name of a ConfigMap in istio-system merged over `istio`
    (istiod's SHARED_MESH_CONFIG). env: more istiod environment (PILOT_* features).
    grpc_host: where xDS listens (a Netns's host_ip for proxies inside that namespace)."""

    def __init__(self, api: ApiServer, *, shared_mesh_config: str | None = None,
                 env: dict | None = None, binary: str | None = None, log_level: str = "info",
                 grpc_host: str = "127.0.0.1"):
        self.api = api
        self.grpc_host = grpc_host
        self.shared_mesh_config = shared_mesh_config
        self.extra_env = dict(env or {})
        self.binary = binary
        self.log_level = log_level
        self.grpc_port = self.http_port = self.monitoring_port = self.ctrlz_port = 0
        self.dir: Path | None = None
        self.proc: Proc | None = None

    def start(self, timeout: float = 120) -> "Istiod":
        binary = self.binary or e2e_tools()["PORTCULLIS_ISTIOD"]
        ensure_namespace(self.api, ISTIO_NS)
        # The working directory has no ./etc/istio/config/mesh: the mesh is the ConfigMap.
        self.dir = work_dir("istiod")
        env = {**ISTIOD_ENV, "KUBECONFIG": self.api.kubeconfig, **self.extra_env}
        if self.shared_mesh_config:
            env["SHARED_MESH_CONFIG"] = self.shared_mesh_config
        for attempt in range(3):
            self.grpc_port, self.http_port = free_port(), free_port()
            self.monitoring_port, self.ctrlz_port = free_port(), free_port()
            argv = [binary, "discovery", f"--kubeconfig={self.api.kubeconfig}",
                    f"--grpcAddr={self.grpc_host}:{self.grpc_port}",
                    f"--httpAddr=127.0.0.1:{self.http_port}",
                    f"--monitoringAddr=127.0.0.1:{self.monitoring_port}",
                    "--ctrlz_address=127.0.0.1", f"--ctrlz_port={self.ctrlz_port}",
                    "--httpsAddr=", "--secureGRPCAddr=", f"--domain={DOMAIN}",
                    f"--log_output_level=default:{self.log_level}"]
            self.proc = Proc("istiod", argv, env=env, cwd=self.dir,
                             log_path=self.dir / "istiod.log").start()
            try:
                self.proc.wait_http(f"{self.http_url}/ready", timeout, ok=lambda s: s == 200)
                return self
            except PeerError as e:
                self.proc.stop()
                if "address already in use" not in str(e) or attempt == 2:
                    raise
        return self

    def restart(self) -> "Istiod":
        """A new istiod process on fresh ports (proxies must be pointed at grpc_port again)."""
        self.stop()
        return self.start()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def metrics(self) -> str:
        return http("GET", f"http://127.0.0.1:{self.monitoring_port}/metrics")[2].decode()

    def xds_rejects(self) -> float:
        """pilot_total_xds_rejects summed over every type: what proxies refused."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("pilot_total_xds_rejects"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def metric(self, name_and_labels: str) -> float:
        return metric_value(self.metrics(), name_and_labels) or 0.0

    def syncz(self) -> list:
        """/debug/syncz: per connected proxy, what was sent and what it acknowledged."""
        return json.loads(http("GET", f"{self.http_url}/debug/syncz")[2] or b"[]")

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace") if self.proc else ""


# ---------------------------------------------------------------------------------------
# a network namespace of the test's own, for proxies that listen where Istio says (0.0.0.0)

class Netns(_Peer):
    """A network namespace the test creates, joined to this one by a veth pair: host_ip on
    this side, ip inside (10.250.<n>.1 and .2, addresses of nothing but these two ends).
    stop() deletes the namespace, which removes the veth pair with it."""

    def __init__(self, n: int):
        self.n = n
        self.name = f"pc-e2e-{os.getpid()}-{n}"
        self.host_ip, self.ip = f"10.250.{n}.1", f"10.250.{n}.2"
        self.veth = f"pcv{os.getpid() % 100000}n{n}"
        self.started = False

    def _ip(self, *args: str, ns: bool = False) -> None:
        argv = ["ip", *(["netns", "exec", self.name, "ip"] if ns else []), *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise PeerError(f"{' '.join(argv)}: {r.stderr.strip()}")

    def start(self) -> "Netns":
        self._ip("netns", "add", self.name)
        self.started = True
        self._ip("link", "add", self.veth, "type", "veth", "peer", "name", self.veth + "p")
        self._ip("link", "set", self.veth + "p", "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        self._ip("link", "set", self.veth, "up")
        self._ip("addr", "add", f"{self.ip}/30", "dev", self.veth + "p", ns=True)
        self._ip("link", "set", self.veth + "p", "up", ns=True)
        self._ip("link", "set", "lo", "up", ns=True)
        return self

    def stop(self) -> None:
        if self.started:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=30)
            self.started = False


class Parts:
    """Peers started in order and stopped in reverse, also when a later start fails."""

    def __init__(self):
        self.started: list = []

    def start(self, part):
        self.started.append(part)  # first: stopped even when its start fails half-way
        part.start()
        return part

    def stop(self) -> None:
        for part in reversed(self.started):
            part.stop()
        self.started.clear()


def netns_cluster(parts: Parts, namespaces: tuple, gateway_api: bool = False):
    """A Netns of its own (a random 10.250.<n>.0/30) and a kube-apiserver with the Istio CRDs
    (and the Gateway API's) and the namespaces, started through parts: (netns, api)."""
    netns = parts.start(Netns(int.from_bytes(os.urandom(1), "big") % 200 + 20))
    api = parts.start(ApiServer())
    install_mesh_crds(api, gateway_api=gateway_api)
    for ns in namespaces:
        ensure_namespace(api, ns)
    return netns, api


# ---------------------------------------------------------------------------------------
# Envoy as an istiod workload

class Proxy(_Peer):
    """The PyPI Envoy bootstrapped as an Istio workload of istiod: ADS over plaintext gRPC to
    istiod's grpc_port, node id `<kind>~<ip>~<name>.<namespace>~<namespace>.svc.cluster.local`,
    node metadata LABELS (what policies and Gateways select), NAMESPACE and the rest istiod
    reads. kind "router" is a gateway, "sidecar" an application's proxy.

    ip: the workload's address as istiod sees it. It must not be the address of another
      workload: istiod takes a proxy's labels from the ServiceEntry endpoint or pod at its IP
      when there is one, so a gateway "at" 127.0.0.1, where the loopback upstreams' endpoints
      are, would lose its own labels. By default each Proxy gets an address of its own in
      127.1.0.0/16 (nothing listens there; Envoy's listeners bind where istiod says).
    netns: the name of a network namespace to run Envoy in (`ip netns exec`).
    wrapper: argv put in front of Envoy's (e.g. ["taskset", "-c", "1"] for bench/)."""

    _count = 0
    _count_lock = threading.Lock()

    def __init__(self, istiod: Istiod, name: str, labels: dict, *, namespace: str = ISTIO_NS,
                 kind: str = "router", ip: str | None = None, admin_port: int | None = None,
                 envoy_bin: str | None = None, log_level: str = "warning",
                 metadata: dict | None = None, netns: str | None = None,
                 service_account: str = "default", concurrency: int = 1,
                 wrapper: list[str] = ()):
        self.istiod, self.name, self.labels = istiod, name, dict(labels)
        if ip is None:
            with Proxy._count_lock:
                Proxy._count += 1
                ip = f"127.1.{Proxy._count // 250}.{Proxy._count % 250 + 1}"
        self.namespace, self.kind, self.ip = namespace, kind, ip
        self.admin_port = admin_port or free_port()
        self.envoy_bin, self.log_level = envoy_bin, log_level
        self.extra_metadata = dict(metadata or {})
        self.netns = netns
        self.service_account = service_account
        self.concurrency = concurrency
        self.wrapper = [str(w) for w in wrapper]
        self.dir = work_dir(f"envoy-{name}")
        self.bootstrap_path = self.dir / "bootstrap.json"
        self.log_path = self.dir / "envoy.log"
        self.proc: Proc | None = None

    @property
    def node_id(self) -> str:
        ns = self.namespace
        return f"{self.kind}~{self.ip}~{self.name}.{ns}~{ns}.svc.{DOMAIN}"

    @property
    def admin_host(self) -> str:
        """Loopback, or inside a netns its own address (reachable from the tests)."""
        return self.ip if self.netns else "127.0.0.1"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_host}:{self.admin_port}"

    def bootstrap(self) -> dict:
        ns = self.namespace
        meta = {
            "NAMESPACE": ns, "NAME": self.name, "LABELS": self.labels, "CLUSTER_ID": "Kubernetes",
            "INSTANCE_IPS": self.ip, "SERVICE_ACCOUNT": self.service_account,
            "WORKLOAD_NAME": self.name, "MESH_ID": DOMAIN, "PROXY_CONFIG": {},
            "ISTIO_PROXY_SHA": "", "ENVOY_STATUS_PORT": 0, **self.extra_metadata,
        }
        xds = {"socket_address": {"address": self.istiod.grpc_host,
                                  "port_value": self.istiod.grpc_port}}
        http2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
        return {
            "node": {"id": self.node_id, "cluster": f"{self.name}.{ns}", "metadata": meta},
            "admin": {"address": {"socket_address": {"address": self.admin_host,
                                                     "port_value": self.admin_port}}},
            "dynamic_resources": {
                "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "ads_config": {"api_type": "GRPC", "set_node_on_first_message_only": True,
                               "transport_api_version": "V3",
                               "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            },
            "static_resources": {"clusters": [{
                "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
                "typed_extension_protocol_options": http2,
                "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": xds}}]}]}}]},
        }

    def argv(self) -> list:
        binary = self.envoy_bin or require_peers("envoy")["envoy"]
        argv = [binary, "-c", self.bootstrap_path, "--concurrency", str(self.concurrency),
                "--use-dynamic-base-id", "--disable-hot-restart", "-l", self.log_level,
                "--drain-time-s", "0", "--parent-shutdown-time-s", "1"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return [*self.wrapper, *argv]

    def start(self, timeout: float = 60) -> "Proxy":
        self.bootstrap_path.write_text(json.dumps(self.bootstrap(), indent=1))
        self.proc = Proc(f"envoy-{self.name}", self.argv(), log_path=self.log_path,
                         cwd=self.dir).start()
        self.proc.wait_http(f"{self.admin_url}/ready", timeout, ok=lambda s: s == 200)
        return self

    # -- what istiod sent ------------------------------------------------------

    def config_dump(self) -> dict:
        return json.loads(http("GET", f"{self.admin_url}/config_dump")[2])

    def listeners(self) -> list[dict]:
        """The active dynamic listeners (what Envoy accepted from istiod)."""
        out = []
        for c in self.config_dump()["configs"]:
            if c.get("@type", "").endswith("ListenersConfigDump"):
                for d in c.get("dynamic_listeners", []):
                    if "active_state" in d:
                        out.append(d["active_state"]["listener"])
        return out

    def listener(self, port: int) -> dict | None:
        for lst in self.listeners():
            if lst.get("address", {}).get("socket_address", {}).get("port_value") == port:
                return lst
        return None

    def http_filters(self, port: int) -> list[dict]:
        """The HTTP filters of the listener on port (first HTTP filter chain), in order."""
        lst = self.listener(port)
        for chain in (lst or {}).get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == HCM:
                    return f["typed_config"].get("http_filters", [])
        return []

    def http_filter(self, port: int, name: str) -> list[dict]:
        """Every typed_config of the HTTP filters called name on the listener on port."""
        return [f["typed_config"] for f in self.http_filters(port) if f.get("name") == name]

    def clusters(self) -> list[dict]:
        out = []
        for c in self.config_dump()["configs"]:
            if c.get("@type", "").endswith("ClustersConfigDump"):
                for d in c.get("dynamic_active_clusters", []):
                    out.append(d["cluster"])
        return out

    def stats(self, contains: str = "") -> dict:
        _, _, body = http("GET", f"{self.admin_url}/stats?filter={urllib.parse.quote(contains)}")
        out = {}
        for line in body.decode().splitlines():
            k, _, v = line.partition(": ")
            out[k] = int(v) if v.isdigit() else v
        return out

    def wait_listener(self, port: int, what: str = "", probe=None, timeout: float = 60) -> dict:
        """Until Envoy has a listener on port (and probe(listener) holds)."""
        def ready():
            lst = self.listener(port)
            return lst if lst and (probe is None or probe(lst)) else None
        return wait_for(what or f"Envoy {self.name} to get a listener on {port} from istiod",
                        ready, timeout, ignore=(OSError, ValueError, KeyError))


# ---------------------------------------------------------------------------------------
# rendering what istiod made into facts the tests assert on

def ext_authz_facts(cfg: dict) -> dict:
    """The parts of an ext_authz HTTP filter config the tests compare with the provider."""
    svc = cfg.get("http_service", {})
    uri = svc.get("server_uri", {})
    resp = svc.get("authorization_response", {})

    def names(m):
        # Back to the provider's syntax: exact "h", prefix "h*", suffix "*h".
        out = []
        for p in (m or {}).get("patterns", []):
            if "prefix" in p:
                out.append(p["prefix"] + "*")
            elif "suffix" in p:
                out.append("*" + p["suffix"])
            else:
                out.append(p.get("exact"))
        return out
    return {
        "cluster": uri.get("cluster"), "timeout": uri.get("timeout"),
        "path_prefix": svc.get("path_prefix"),
        "status_on_error": (cfg.get("status_on_error") or {}).get("code"),
        "failure_mode_allow": bool(cfg.get("failure_mode_allow", False)),
        "allowed_headers": names(cfg.get("allowed_headers")),
        "allowed_upstream_headers": names(resp.get("allowed_upstream_headers")),
        "allowed_client_headers": names(resp.get("allowed_client_headers")),
        "allowed_client_headers_on_success": names(resp.get("allowed_client_headers_on_success")),
        "headers_to_add": {h["key"]: h["value"] for h in
                           svc.get("authorization_request", {}).get("headers_to_add", [])},
    }


def shadow_rules(rbac_configs: list[dict]) -> dict:
    """The CUSTOM policies istiod compiled into RBAC shadow rules: policy name → the rule
    (the hosts and not-paths are inside its permissions)."""
    out = {}
    for cfg in rbac_configs:
        policies = (cfg.get("shadow_rules") or {}).get("policies", {})
        out.update(policies)
    return out


def _strings(obj) -> list[str]:
    """Every string value nested in obj (to look for hosts and paths in RBAC permissions)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def rule_strings(rule: dict) -> set[str]:
    return set(_strings(rule))


# ---------------------------------------------------------------------------------------
# one ingress gateway, as installed by Istio's chart, in front of one upstream

class IngressGateway(_Peer):
    """An Envoy ingress gateway of istiod: workload `name` in istio-system with labels,
    a Gateway server on 127.0.0.1:port, and a VirtualService sending every host to
    upstream (any object with host/port, registered as the ServiceEntry `upstream_host`)."""

    def __init__(self, istiod: Istiod, upstream, *, name: str = "istio-ingressgateway",
                 labels: dict | None = None, port: int | None = None,
                 upstream_host: str | None = None, upstream_port: int = 8080,
                 log_level: str = "warning", concurrency: int = 1, wrapper: list[str] = ()):
        self.istiod, self.api = istiod, istiod.api
        self.name = name
        self.labels = dict(labels or {"istio": "ingressgateway"})
        self.port = port or free_port()
        self.upstream = upstream
        self.upstream_host = upstream_host or f"{name}-upstream.{ISTIO_NS}.svc.{DOMAIN}"
        self.upstream_port = upstream_port
        self.proxy = Proxy(istiod, name, self.labels, log_level=log_level,
                           concurrency=concurrency, wrapper=wrapper)

    @property
    def admin_url(self) -> str:
        return self.proxy.admin_url

    @property
    def pid(self):
        return self.proxy.pid

    @property
    def log_path(self):
        return self.proxy.log_path

    def objects(self) -> list[dict]:
        up_host, up_port = _addr(self.upstream)
        return [
            service_entry(f"{self.name}-upstream", ISTIO_NS, self.upstream_host,
                          self.upstream_port, up_port, address=up_host),
            gateway(self.name, self.labels, self.port),
            virtual_service(self.name, [f"{ISTIO_NS}/{self.name}"], self.upstream_host,
                            self.upstream_port),
        ]

    def start(self, timeout: float = 60) -> "IngressGateway":
        apply(self.api, *self.objects())
        self.proxy.start(timeout)
        self.proxy.wait_listener(self.port, timeout=timeout)
        return self

    def stop(self) -> None:
        self.proxy.stop()

    def http_filter(self, name: str) -> list[dict]:
        return self.proxy.http_filter(self.port, name)

    def ext_authz(self) -> list[dict]:
        return self.http_filter(EXT_AUTHZ)

    def stats(self, contains: str = "ext_authz") -> dict:
        return self.proxy.stats(contains)

    def wait_filters(self, probe, what: str, timeout: float = 60):
        """Until probe(http_filters of the gateway listener) holds; returns the filters."""
        def ready():
            filters = self.proxy.http_filters(self.port)
            return filters if probe(filters) else None
        return wait_for(what, ready, timeout, ignore=(OSError, ValueError, KeyError))


# ---------------------------------------------------------------------------------------
# the session's mesh, for tests that protect hosts without the controller

class Mesh:
    """kube-apiserver + Istio CRDs + istiod, shared by every test of a session that needs an
    istiod-driven Envoy but no controller (Mesh.shared()). Each `Envoy` on it is its own
    gateway workload with its own labels, Gateway, provider and AuthorizationPolicy, so
    modules do not see each other's configuration."""

    _shared: "Mesh | None" = None
    _lock = threading.Lock()

    def __init__(self):
        self.api = ApiServer()
        self.istiod: Istiod | None = None
        self.providers: dict[str, dict] = {}
        self._mesh_lock = threading.Lock()
        self._n = 0

    @classmethod
    def shared(cls) -> "Mesh":
        with cls._lock:
            if cls._shared is None:
                m = cls()
                try:
                    m.start()
                except BaseException:
                    m.stop()
                    raise
                cls._shared = m
            return cls._shared

    @classmethod
    def stop_shared(cls) -> None:
        with cls._lock:
            if cls._shared is not None:
                cls._shared.stop()
                cls._shared = None

    def start(self) -> "Mesh":
        self.api.start()
        install_mesh_crds(self.api)
        ensure_namespace(self.api, ISTIO_NS)
        apply(self.api, mesh_configmap({**MESH_DEFAULTS, "extensionProviders": []}))
        self.istiod = Istiod(self.api).start()
        return self

    def stop(self) -> None:
        if self.istiod:
            self.istiod.stop()
        self.api.stop()

    def next_name(self, prefix: str) -> str:
        with self._mesh_lock:
            self._n += 1
            return f"{prefix}-{self._n}"

    def set_provider(self, name: str, provider: dict | None) -> None:
        """Adds, replaces (or with None removes) one extension provider of the mesh config."""
        with self._mesh_lock:
            if provider is None:
                self.providers.pop(name, None)
            else:
                self.providers[name] = provider
            mesh = {**MESH_DEFAULTS,
                    "extensionProviders": [{"name": n, "envoyExtAuthzHttp": p}
                                           for n, p in sorted(self.providers.items())]}
            apply(self.api, mesh_configmap(mesh))


def custom_policy(name: str, provider: str, selector: dict, hosts: list[str],
                  not_paths: list[str] | None = None, namespace: str = ISTIO_NS) -> dict:
    """An AuthorizationPolicy shaped like the controller's: CUSTOM, one rule whose
    to.operation lists each host as h and h:*, notPaths for the skipped paths (no hosts and
    no paths: every request)."""
    op: dict = {}
    if hosts:
        op["hosts"] = [x for h in hosts for x in (h, f"{h}:*")]
    if not_paths:
        op["notPaths"] = list(not_paths)
    return {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"action": "CUSTOM", "provider": {"name": provider},
                 "selector": {"matchLabels": dict(selector)},
                 "rules": [{"to": [{"operation": op}]} if op else {}]},
    }


class Envoy(_Peer):
    """An istiod-driven gateway Envoy on the session's Mesh that protects `hosts` with an
    ext_authz provider: `provider` is an `envoyExtAuthzHttp` dict (service: the authorizer's
    IP, port: its port, pathPrefix, timeout, headers lists, ...), registered in the mesh
    config under a name of its own; `hosts` go through it (a CUSTOM AuthorizationPolicy on
    this gateway; None: every host, as "*"), except `not_paths`. Requests reach `upstream`.

    What the Envoy runs is what istiod rendered from these; nothing is hand-written."""

    def __init__(self, provider: dict, upstream, *, hosts: list[str] | None = None,
                 not_paths: list[str] | None = None, port: int | None = None,
                 mesh: Mesh | None = None, log_level: str = "warning"):
        self.provider, self.upstream = dict(provider), upstream
        self.hosts, self.not_paths = hosts, not_paths
        self.port = port or free_port()
        self.log_level = log_level
        self._mesh = mesh
        self.mesh: Mesh | None = None
        self.name = ""
        self.gateway: IngressGateway | None = None
        self._objects: list[dict] = []

    @property
    def admin_url(self) -> str:
        return self.gateway.admin_url

    @property
    def proxy(self) -> Proxy:
        return self.gateway.proxy

    @property
    def provider_name(self) -> str:
        return f"authz-{self.name}"

    def _authorizer(self) -> tuple[dict, dict]:
        """The provider as the mesh config holds it (service → a mesh host name) and the
        ServiceEntry that puts the authorizer's address behind that name."""
        p = dict(self.provider)
        address, port = p.pop("service"), int(p.pop("port"))
        host = f"{self.name}-authz.{ISTIO_NS}.svc.{DOMAIN}"
        p.update(service=host, port=port)
        return p, service_entry(f"{self.name}-authz", ISTIO_NS, host, port, port, address=address)

    def start(self, timeout: float = 60) -> "Envoy":
        self.mesh = self._mesh or Mesh.shared()
        self.name = self.mesh.next_name("gw")
        labels = {"istio": self.name}
        provider, authz_se = self._authorizer()
        policy = custom_policy(self.name, self.provider_name, labels, self.hosts or [],
                               self.not_paths)
        self._objects = [authz_se, policy]
        apply(self.mesh.api, authz_se)
        self.mesh.set_provider(self.provider_name, provider)
        apply(self.mesh.api, policy)
        self.gateway = IngressGateway(self.mesh.istiod, self.upstream, name=self.name, labels=labels,
                                      port=self.port, log_level=self.log_level)
        self._objects += self.gateway.objects()
        self.gateway.start(timeout)
        self.gateway.wait_filters(lambda fs: any(f.get("name") == EXT_AUTHZ for f in fs),
                                  f"istiod to give {self.name} its ext_authz filter", timeout)
        return self

    def stop(self) -> None:
        if self.gateway:
            self.gateway.stop()
        if self.mesh and self._objects:
            try:
                delete(self.mesh.api, *self._objects)
                self.mesh.set_provider(self.provider_name, None)
            except Exception:  # noqa: BLE001 - the session's apiserver may be going away
                pass
            self._objects = []

    def _expected(self, provider: dict) -> dict:
        """What of the provider is visible in the ext_authz filter istiod renders."""
        return {"cluster": f"outbound|{int(provider['port'])}||{self.name}-authz.{ISTIO_NS}.svc.{DOMAIN}",
                "failure_mode_allow": bool(provider.get("failOpen", False)),
                "path_prefix": provider.get("pathPrefix")}

    def reconfigure(self, provider: dict, timeout: float = 60) -> "Envoy":
        """A new provider for this gateway in the mesh config (and its authorizer's address),
        live: istiod pushes it, Envoy keeps running. Returns once Envoy has it."""
        self.provider = dict(provider)
        rendered, authz_se = self._authorizer()
        apply(self.mesh.api, authz_se)
        self.mesh.set_provider(self.provider_name, rendered)
        want = self._expected(self.provider)

        def applied():
            got = self.ext_authz()
            return all(got.get(k) == v for k, v in want.items())
        wait_for(f"istiod to push {self.name}'s new provider", applied, timeout,
                 ignore=(OSError, ValueError, KeyError, IndexError))
        return self

    def ext_authz(self) -> dict:
        return ext_authz_facts(self.gateway.ext_authz()[0])

    def stats(self, contains: str = "ext_authz") -> dict:
        return self.gateway.stats(contains)

    def ext_authz_stat(self, name: str) -> int:
        """An ext_authz counter (ok, denied, error, failure_mode_allowed...) of the gateway's
        listener, whatever stat prefix istiod gave its connection manager."""
        return sum(v for k, v in self.stats(f".ext_authz.{name}").items()
                   if k.endswith(f".ext_authz.{name}") and isinstance(v, int))
