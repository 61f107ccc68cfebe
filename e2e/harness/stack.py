"""The whole portcullis flow on 127.0.0.1, as a cluster would run it.

    kubectl apply ProtectedHost ──► kube-apiserver ◄── portcullis-controller
                                         │  AuthorizationPolicy, mesh provider,
                                         │  authd config shards; authd's Lease
               portcullis-authd ◄────────┤ (--watch-config)
                     ▲                   └──► Gateway (istiod's part) ──► Envoy ext_authz
                     └───────────────────── check ───────────────────────┘──► Echo

One piece stands in for what a cluster does around the daemons, and nothing more: `Gateway`
turns the rendered mesh provider and AuthorizationPolicies into the gateway Envoy's ext_authz
configuration the way istiod does (service → authd's address, policy hosts → ext_authz
routes, notPaths → bypass). authd reads its hosts through the API with its ServiceAccount's
token, as in a cluster. The daemons under test, the API server, Envoy, Keycloak and the browser
are all real.

Used by e2e/tests/test_flow.py and by `make demo` (e2e/demo.py).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import yaml

from .kube import ApiServer
from .peers import Echo, Envoy, Keycloak
from .proc import AUTHD, CONTROLLER, REPO, Proc, built, free_port, http, wait_for, work_dir

AUTHD_NS = "portcullis-system"


class _Poller(threading.Thread):
    """Calls sync_once() every interval seconds on a daemon thread until stop()."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self._stopping = threading.Event()

    def sync_once(self):
        raise NotImplementedError

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.sync_once()
            except Exception:  # the API server may be restarting; try again next tick
                pass

    def stop(self) -> None:
        """Ends the loop and waits (bounded) for a pass under way to finish."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=60)


class Gateway(_Poller):
    """istiod's part for one ingress gateway: reads the `portcullis` provider from the mesh
    config and the CUSTOM AuthorizationPolicies in istio-system, and (re)configures Envoy."""

    def __init__(self, api: ApiServer, envoy: Envoy, authd_port: int, interval: float = 0.3):
        super().__init__(interval)
        self.api, self.envoy, self.authd_port = api, envoy, authd_port
        self.applied = None
        self.reconfigures = 0
        self._lock = threading.Lock()

    def desired(self):
        status, body = self.api.get("/api/v1/namespaces/istio-system/configmaps/istio")
        provider = None
        if status == 200:
            mesh = yaml.safe_load(json.loads(body).get("data", {}).get("mesh", "") or "") or {}
            for p in mesh.get("extensionProviders", []):
                if p.get("name") == "portcullis":
                    provider = dict(p["envoyExtAuthzHttp"])
        status, body = self.api.get(
            "/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies")
        hosts, not_paths = [], []
        if status == 200 and provider is not None:
            for pol in json.loads(body).get("items", []):
                spec = pol.get("spec", {})
                if spec.get("action") != "CUSTOM" or spec.get("provider", {}).get("name") != "portcullis":
                    continue
                for rule in spec.get("rules", []):
                    for to in rule.get("to", []):
                        op = to.get("operation", {})
                        hosts += [h for h in op.get("hosts", []) if not h.endswith(":*")]
                        not_paths += op.get("notPaths", [])
        if provider is not None:
            # The Service name resolves to authd's pod; here that is loopback and its port.
            provider.update(service="127.0.0.1", port=self.authd_port)
        return provider, sorted(set(hosts)), sorted(set(not_paths))

    def sync_once(self) -> bool:
        with self._lock:
            want = self.desired()
            if want == self.applied:
                return False
            provider, hosts, not_paths = want
            self.envoy.reconfigure(provider or self.envoy.provider, hosts=hosts,
                                   not_paths=not_paths)
            self.applied = want
            self.reconfigures += 1
            return True



class Stack:
    """API server + controller + authd + gateway Envoy + Keycloak + Echo, all on loopback.

    host: the protected host name (resolves to loopback in Chromium: *.localhost).
    progress: called with one line per step (the demo prints them)."""

    CLIENT_ID = "echo"
    CLIENT_SECRET = "echo-demo-secret"

    def __init__(self, host: str = "echo.localhost", progress=lambda msg: None):
        self.host, self.progress = host, progress
        self.dir = work_dir("stack")
        self.gateway_port = free_port()
        self.authd_port, self.authd_admin_port = free_port(), free_port()
        self.metrics_port = free_port()
        self.parts: list = []
        self.api = self.keycloak = self.echo = self.envoy = None
        self.controller = self.authd = self.gateway = None

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, part):
        """Records part before starting it, so stop() ends it even when its start fails
        half-way."""
        self.parts.append(part)
        part.start()
        return part

    def start(self) -> None:
        self.progress("starting kube-apiserver and etcd")
        self.api = self._start(ApiServer())
        self.progress("installing the ProtectedHost and Istio CRDs")
        self.api.kubectl("apply", "-f", str(REPO / "crds" / "protectedhost.yaml"))
        self.api.install_istio_crds()
        self.api.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         "crd/protectedhosts.portcullis.io")
        for ns in (AUTHD_NS, "istio-system", "test-auth"):
            self.api.kubectl("create", "namespace", ns)
        self.api.kubectl("-n", "istio-system", "create", "configmap", "istio",
                         "--from-literal=mesh=accessLogFile: /dev/stdout\n")
        self.start_keycloak()
        self.start_daemons()
        self.start_gateway()

    def start_keycloak(self) -> None:
        self.progress("starting Keycloak (realm main: alice in admins, bob in staff)")
        base = f"http://{self.host}:{self.gateway_port}"
        self.keycloak = Keycloak([{"clientId": self.CLIENT_ID, "secret": self.CLIENT_SECRET,
                                   "redirectUris": [f"{base}/*"], "pkce": "S256",
                                   "directAccessGrants": True}])
        self._start(self.keycloak)

    def start_daemons(self) -> None:
        secret = self.dir / "cookie-secret"
        secret.write_bytes(base64.b64encode(os.urandom(32)))
        os.chmod(secret, 0o600)
        self.progress("starting portcullis-controller")
        self.controller = self._start(Proc("controller", [
            built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run",
            f"--kubeconfig={self.api.kubeconfig}", "--mesh-config=istio", "--leader-elect=false",
            "--allow-insecure-issuers", f"--metrics-addr=127.0.0.1:{self.metrics_port}"],
            log_path=self.dir / "controller.log"))
        self.controller.wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz",
                                  ok=lambda s: s == 200)
        # authd as in a cluster: its ServiceAccount's token and Role (deploy/authd-rbac.yaml),
        # its hosts from the config shards the controller writes, its Lease reporting them.
        self.api.kubectl("apply", "-f", str(REPO / "deploy" / "authd-rbac.yaml"))
        kubeconfig = self.api.service_account_kubeconfig(AUTHD_NS, "portcullis-authd")
        self.progress("starting portcullis-authd")
        self.authd = self._start(Proc("authd", [
            built(AUTHD, "PORTCULLIS_AUTHD"), "--watch-config", f"--kubeconfig={kubeconfig}",
            f"--listen=127.0.0.1:{self.authd_port}",
            f"--admin-listen=127.0.0.1:{self.authd_admin_port}", "--allow-insecure-issuers",
            f"--cookie-secret-file={secret}"], env={"POD_NAME": "authd-0"},
            log_path=self.dir / "authd.log"))
        self.authd.wait_http(f"http://127.0.0.1:{self.authd_admin_port}/readyz",
                             ok=lambda s: s == 200)

    def start_gateway(self) -> None:
        self.progress("starting the echo app and the gateway Envoy")
        self.echo = self._start(Echo())
        placeholder = {"service": "127.0.0.1", "port": self.authd_port, "pathPrefix": "/ext-authz",
                       "timeout": "2s"}
        self.envoy = self._start(Envoy(placeholder, self.echo, hosts=[], port=self.gateway_port))
        self.gateway = Gateway(self.api, self.envoy, self.authd_port)
        self.gateway.sync_once()
        self._start(self.gateway)

    def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                pass
        self.parts.clear()

    # -- what a user does ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}/"

    def protected_host(self, groups: list[str]) -> str:
        """examples/echoserver.yaml, pointed at the local Keycloak and host."""
        ph = yaml.safe_load((REPO / "examples" / "echoserver.yaml").read_text())
        ph["spec"]["hosts"] = [self.host]
        ph["spec"]["oidc"]["issuerURL"] = self.keycloak.issuer
        ph["spec"]["oidc"]["clientID"] = self.CLIENT_ID
        ph["spec"].setdefault("access", {})["allowedGroups"] = groups
        return yaml.safe_dump(ph)

    def apply_echo(self, groups: list[str] = ("admins",)) -> None:
        self.api.kubectl("-n", "test-auth", "create", "secret", "generic", "echo-oidc",
                         f"--from-literal=client-secret={self.CLIENT_SECRET}")
        self.api.kubectl("apply", "-f", "-", input=self.protected_host(list(groups)))

    def wait_protected(self, timeout: float = 60) -> None:
        """Until the gateway sends the host through ext_authz and authd serves it."""
        wait_for("the gateway to protect the host",
                 lambda: self.host in (self.gateway.applied or (None, [], []))[1], timeout)
        wait_for("authd to be ready", lambda: self.authd_ready(), timeout)
        wait_for("authd to serve the host", lambda: self.authd_knows_host(), timeout)

    def authd_ready(self) -> bool:
        try:
            return http("GET", f"http://127.0.0.1:{self.authd_admin_port}/readyz")[0] == 200
        except OSError:
            return False

    def authd_knows_host(self) -> bool:
        """authd has reloaded the config with the host: a check asks for a login, not 403."""
        try:
            status = http("GET", f"http://127.0.0.1:{self.authd_port}/ext-authz/",
                          headers={"Host": self.host, "Accept": "application/json"})[0]
        except OSError:
            return False
        return status == 401

    def ready_condition(self, generation: int | None = None) -> str:
        """The echo ProtectedHost's Ready status ("" while it speaks of an older generation
        than `generation`, when given)."""
        r = self.api.kubectl("-n", "test-auth", "get", "ph", "echo", "-o", "json", check=False)
        try:
            obj = json.loads(r.stdout)
        except ValueError:
            return ""
        for c in obj.get("status", {}).get("conditions", []):
            if c.get("type") == "Ready" and (generation is None or
                                             c.get("observedGeneration", 0) >= generation):
                return c.get("status", "")
        return ""
