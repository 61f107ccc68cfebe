"""The whole portcullis flow on 127.0.0.1, as a cluster runs it.

    kubectl apply ProtectedHost ──► kube-apiserver ◄── portcullis-controller
                                         │  AuthorizationPolicy, mesh provider,
                                         │  authd config shards; authd's Lease
               portcullis-authd ◄────────┤ (--watch-config)
                     ▲                   └──► istiod (pilot-discovery) ──ADS──► gateway Envoy
                     │                                                          │ ext_authz
                     └──────────────────────── check ──────────────────────────┘──► Echo

The gateway Envoy is configured by a real istiod from what the controller wrote: the
`portcullis` provider in the mesh config (ConfigMap `istio`, or the controller's own
ConfigMap read through SHARED_MESH_CONFIG) and the CUSTOM AuthorizationPolicies. authd
reads its hosts through the API with its ServiceAccount's token, as in a cluster. What
Kubernetes' Services and EndpointSlices would give istiod (authd's and the app's
addresses) are ServiceEntries with 127.0.0.1 endpoints, since the apiserver refuses loopback
EndpointSlices. The daemons under test, the API server, istiod, Envoy, Keycloak and the
browser are all real.

Used by e2e/tests/test_flow.py and by `make demo` (e2e/demo.py).
"""

from __future__ import annotations

import base64
import json
import os

import yaml

from .kube import ApiServer
from .istio import (EXT_AUTHZ, ISTIO_NS, RBAC, IngressGateway, Istiod, apply, mesh_configmap,
                    rule_strings, service_entry, shadow_rules)
from .peers import Echo, Keycloak
from .proc import AUTHD, CONTROLLER, REPO, Proc, built, free_port, http, wait_for, work_dir

AUTHD_NS = "portcullis-system"


AUTHD_SERVICE = f"portcullis-authd.{AUTHD_NS}.svc.cluster.local"
ECHO_SERVICE = "echo.test-auth.svc.cluster.local"
SHARED_CONFIGMAP = "portcullis-mesh"
# What an Istio install's ConfigMap `istio` holds before portcullis: settings the controller
# must keep, and another team's provider it must not touch (enableAutoMtls: istio.MESH_DEFAULTS).
INSTALLER_MESH = """accessLogFile: /dev/stdout
enableAutoMtls: false
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
extensionProviders:
- name: other-team
  envoyExtAuthzHttp:
    service: other-authz.other.svc.cluster.local
    port: 9000
"""


class Stack:
    """API server + istiod + controller + authd + gateway Envoy + Keycloak + Echo, all on
    loopback.

    host: the protected host name (resolves to loopback in Chromium: *.localhost).
    mesh_config: the controller's --mesh-config: "istio" (merge into ConfigMap istio) or
      "shared" (its own ConfigMap portcullis-mesh, which istiod reads through
      SHARED_MESH_CONFIG).
    progress: called with one line per step (the demo prints them)."""

    CLIENT_ID = "echo"
    CLIENT_SECRET = "echo-demo-secret"

    def __init__(self, host: str = "echo.localhost", progress=lambda msg: None,
                 mesh_config: str = "istio"):
        assert mesh_config in ("istio", "shared")
        self.host, self.progress, self.mesh_config = host, progress, mesh_config
        self.dir = work_dir("stack")
        self.gateway_port = free_port()
        self.authd_port, self.authd_admin_port = free_port(), free_port()
        self.metrics_port = free_port()
        self.parts: list = []
        self.api = self.istiod = self.keycloak = self.echo = self.gateway = None
        self.controller = self.authd = None

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
        for ns in (AUTHD_NS, ISTIO_NS, "test-auth"):
            self.api.kubectl("create", "namespace", ns)
        apply(self.api, mesh_configmap(INSTALLER_MESH))
        self.progress("starting istiod (pilot-discovery)")
        self.istiod = self._start(self._istiod())
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

    def _istiod(self) -> Istiod:
        return Istiod(self.api, shared_mesh_config=SHARED_CONFIGMAP
                      if self.mesh_config == "shared" else None)

    def _controller(self) -> Proc:
        return Proc("controller", [
            built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run",
            f"--kubeconfig={self.api.kubeconfig}", f"--mesh-config={self.mesh_config}",
            "--leader-elect=false", "--allow-insecure-issuers",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}"],
            log_path=self.dir / "controller.log")

    def _start_controller(self) -> None:
        self.progress(f"starting portcullis-controller (--mesh-config={self.mesh_config})")
        self.controller = self._start(self._controller())
        self.controller.wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz",
                                  ok=lambda s: s == 200)

    def _drop(self, part) -> None:
        part.stop()
        self.parts.remove(part)

    def use_shared_mesh_config(self) -> None:
        """Moves the install to --mesh-config=shared as an operator would: the controller
        restarted in that mode, the portcullis provider taken out of ConfigMap istio, istiod
        restarted with SHARED_MESH_CONFIG, and the gateway Envoy reconnected to it."""
        for part in (self.gateway, self.controller, self.istiod):
            self._drop(part)
        self.mesh_config = "shared"
        apply(self.api, mesh_configmap(INSTALLER_MESH))
        self.progress("starting istiod with SHARED_MESH_CONFIG")
        self.istiod = self._start(self._istiod())
        self._start_controller()
        self.gateway = self._start(IngressGateway(
            self.istiod, self.echo, port=self.gateway_port, upstream_host=ECHO_SERVICE))

    def start_daemons(self) -> None:
        secret = self.dir / "cookie-secret"
        secret.write_bytes(base64.b64encode(os.urandom(32)))
        os.chmod(secret, 0o600)
        self._start_controller()
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
        self.progress("starting the echo app and the istiod-driven gateway Envoy")
        self.echo = self._start(Echo())
        # Service portcullis-authd:4180 of deploy/, its endpoint the local authd.
        apply(self.api, service_entry("portcullis-authd", AUTHD_NS, AUTHD_SERVICE, 4180,
                                      self.authd_port))
        self.gateway = self._start(IngressGateway(
            self.istiod, self.echo, port=self.gateway_port, upstream_host=ECHO_SERVICE))

    def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                pass
        self.parts.clear()

    # -- what istiod made ----------------------------------------------------

    def ext_authz(self) -> list[dict]:
        """The ext_authz filters istiod put on the gateway listener."""
        return self.gateway.http_filter(EXT_AUTHZ)

    def protected_hosts(self) -> set[str]:
        """Every host (and host:*) named by the CUSTOM policies istiod compiled into the
        gateway's RBAC shadow rules, i.e. what the gateway sends through ext_authz."""
        rules = shadow_rules(self.gateway.http_filter(RBAC))
        return set().union(*(rule_strings(r) for r in rules.values())) if rules else set()

    def gateway_protects(self) -> bool:
        return bool(self.ext_authz()) and self.host in self.protected_hosts()

    # -- what a user does ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}/"

    def protected_host(self, groups: list[str], skip: list[str] = ()) -> str:
        """examples/echoserver.yaml, pointed at the local Keycloak and host."""
        ph = yaml.safe_load((REPO / "examples" / "echoserver.yaml").read_text())
        ph["spec"]["hosts"] = [self.host]
        ph["spec"]["oidc"]["issuerURL"] = self.keycloak.issuer
        ph["spec"]["oidc"]["clientID"] = self.CLIENT_ID
        ph["spec"].setdefault("access", {})["allowedGroups"] = groups
        if skip:
            ph["spec"]["paths"] = {"skip": list(skip)}
        return yaml.safe_dump(ph)

    def apply_echo(self, groups: list[str] = ("admins",), skip: list[str] = ()) -> None:
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "echo-oidc", "namespace": "test-auth"},
                  "stringData": {"client-secret": self.CLIENT_SECRET}}
        apply(self.api, secret)
        self.api.kubectl("apply", "-f", "-", input=self.protected_host(list(groups), skip))

    def wait_protected(self, timeout: float = 60) -> None:
        """Until istiod has given the gateway the host's check and authd serves it."""
        wait_for("istiod to send the host through ext_authz on the gateway",
                 self.gateway_protects, timeout, ignore=(OSError, ValueError, KeyError))
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
