"""The Helm chart charts/portcullis (issue 11, item 1).

Without peers: `helm lint --strict` is clean; `helm template` with default values yields the
objects of `kubectl kustomize deploy/` (and, per mesh-config mode and namespace, those of
`portcullis-controller bootstrap`), except for the differences listed in CHART_ONLY and
KUSTOMIZE_ONLY; when deploy/ changes, the failure names every field that differs and the
template that renders it. Values reach the objects; values.schema.json refuses bad values naming
the field; the ServiceMonitor, PrometheusRule and Grafana dashboard pass monitoring-check (the
Prometheus Operator's types, PromQL parser); charts/portcullis/README.md is what
scripts/chart-readme.py generates from the schema.

Against a real kube-apiserver (e2e/harness/kube.py): `helm install`, `helm upgrade` (the cookie
secret unchanged), `helm uninstall` (the cookie secret kept) and a reinstall that adopts it; the
installed RBAC grants what deploy/'s does (`kubectl auth can-i`); every metric name the alerts
and the dashboard use is exported by a running authd and controller.
"""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from e2e.harness.authd import Authd, config_head  # noqa: E402
from e2e.harness.helm import CHART, helm, template, tools  # noqa: E402
from e2e.harness.kube import api_server  # noqa: E402,F401  (fixture)
from e2e.harness.proc import (CONTROLLER, REPO, Proc, built, free_port, http,  # noqa: E402
                              skip_e2e, wait_for)

NS = "portcullis-system"
DEPLOY = REPO / "deploy"
CONTROLLER_SA = f"system:serviceaccount:{NS}:portcullis-controller"
AUTHD_SA = f"system:serviceaccount:{NS}:portcullis-authd"
COOKIE = ("Secret", NS, "portcullis-cookie-secret")

# What differs between the chart with default values and deploy/, on purpose:
#   the Namespace: `helm install --create-namespace` makes it (a chart that owns its namespace
#     cannot be installed into an existing one);
#   the cookie Secret: deploy/ ships none (README: make it yourself or use bootstrap), the chart
#     generates it once and keeps it.
KUSTOMIZE_ONLY = {("Namespace", "", NS)}
CHART_ONLY = {COOKIE}

MONITORING = ["--set", "metrics.serviceMonitor.enabled=true",
              "--set", "metrics.prometheusRule.enabled=true",
              "--set", "metrics.dashboard.enabled=true",
              "--set", "networkPolicy.enabled=true"]


def key(doc: dict) -> tuple[str, str, str]:
    m = doc["metadata"]
    return doc["kind"], m.get("namespace", ""), m["name"]


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return docs_of(out.stdout)


def bootstrap(*args: str) -> list[dict]:
    proc = subprocess.run([built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "bootstrap", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return docs_of(proc.stdout)


def field_diff(a, b, ref: str, path: str = ""):
    """Every path where a (from ref) and b (the chart's) differ, as readable lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in b:
                yield f"{p}: only in {ref}: {json.dumps(a[k])}"
            elif k not in a:
                yield f"{p}: only in the chart: {json.dumps(b[k])}"
            else:
                yield from field_diff(a[k], b[k], ref, p)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from field_diff(x, y, ref, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {ref} {json.dumps(a)}, chart {json.dumps(b)}"


def differences(ref: str, reference: list[dict], chart: list[tuple[str, dict]], ref_only=(),
                chart_only=(), labels_only=()) -> list[str]:
    """What differs between reference objects and the chart's, one line per field, each naming
    the object and the template it comes from; the objects in ref_only / chart_only are
    expected on one side only, those in labels_only are compared by their labels alone."""
    ref = {key(d): d for d in reference}
    ours = {key(d): (src, d) for src, d in chart}
    lines = []
    for k in sorted(set(ref) | set(ours)):
        name = "{} {}/{}".format(*k) if k[1] else "{} {}".format(k[0], k[2])
        if k not in ours:
            if k not in ref_only:
                lines.append(f"{name}: missing from the chart")
            continue
        src, doc = ours[k]
        if k not in ref:
            if k not in chart_only:
                lines.append(f"{name} ({src}): only in the chart")
            continue
        a, b = ref[k], doc
        if k in labels_only:
            a, b = a["metadata"]["labels"], b["metadata"]["labels"]
        lines += [f"{name} ({src}): {line}" for line in field_diff(a, b, ref)]
    for k in sorted(set(ref_only) | set(chart_only)):
        if k in ref_only and k not in ref or k in chart_only and k not in ours:
            lines.append("{} {}/{}: listed as expected on one side, but absent".format(*k))
    return lines


def find(chart, kind, name):
    hits = [d for _, d in chart if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def pod_spec(chart, name):
    return find(chart, "Deployment", name)["spec"]["template"]["spec"]


# ---- no peers ---------------------------------------------------------------------------------


def test_lint_is_clean():
    out = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout
    assert "[INFO]" not in out.stdout and "[WARNING]" not in out.stdout, out.stdout
    # With every optional part switched on, too.
    out = helm("lint", "--strict", str(CHART), *MONITORING)
    assert "[INFO]" not in out.stdout and "[WARNING]" not in out.stdout, out.stdout


def test_template_yields_what_kustomize_builds():
    """The chart follows deploy/: on failure, update charts/portcullis/templates/<file>
    (each mirrors deploy/<file>) until the listed differences are gone."""
    lines = differences("kustomize", kustomize(), template(), KUSTOMIZE_ONLY, CHART_ONLY)
    assert not lines, "deploy/ and charts/portcullis differ:\n  " + "\n  ".join(lines)


@pytest.mark.parametrize("mode", ["istio", "shared", "none"])
@pytest.mark.parametrize("namespace", [NS, "auth"])
def test_template_yields_what_bootstrap_prints(mode, namespace):
    ref = bootstrap(f"--mesh-config={mode}", f"--namespace={namespace}")
    chart = template("--set", f"meshConfig.mode={mode}", namespace=namespace)
    cookie = ("Secret", namespace, "portcullis-cookie-secret")
    # The cookie Secret: bootstrap's is new on every run, the chart's is kept (annotation).
    lines = differences("bootstrap", ref, chart, {("Namespace", "", namespace)},
                        labels_only={cookie})
    assert not lines, f"bootstrap --mesh-config={mode} and the chart differ:\n  " + \
        "\n  ".join(lines)


def test_cookie_secret_is_generated_and_kept():
    s1 = find(template(), "Secret", "portcullis-cookie-secret")
    s2 = find(template(), "Secret", "portcullis-cookie-secret")
    assert s1["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    raw = base64.b64decode(s1["data"]["secret"])
    assert len(base64.b64decode(raw)) == 32
    assert s1["data"] != s2["data"]  # fresh on every render without a cluster to look it up in


def test_existing_cookie_secret():
    chart = template("--set", "cookieSecret.existingSecret=my-cookie", "--set",
                     "cookieSecret.key=current")
    assert all(d["kind"] != "Secret" for _, d in chart)
    secret = pod_spec(chart, "portcullis-authd")["volumes"][0]["secret"]
    assert secret["secretName"] == "my-cookie"
    assert secret["items"] == [{"key": "current", "path": "secret"}]


VALUES = """\
logLevel: debug
imagePullSecrets: [{name: regcred}]
meshConfig: {mode: istio, revision: canary, namespace: istio-control, egressServiceEntries: true}
controller:
  replicas: 3
  image: {repository: registry.example.com/pc/controller, tag: "1.2.3", pullPolicy: Always}
  resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 48Mi}}
  podAnnotations: {example.com/a: "1"}
  podLabels: {team: platform}
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
  podAntiAffinity: hard
  priorityClassName: system-cluster-critical
  podDisruptionBudget: {enabled: true, minAvailable: 1}
authd:
  replicas: 4
  image: {repository: registry.example.com/pc/authd, pullPolicy: IfNotPresent}
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [edge]}]}]}}}
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: portcullis-authd}}}
  podDisruptionBudget: {enabled: true, maxUnavailable: "25%"}
"""


def test_values_reach_the_objects(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    chart = template("-f", str(values))
    ctl, authd = pod_spec(chart, "portcullis-controller"), pod_spec(chart, "portcullis-authd")
    c = ctl["containers"][0]
    assert c["image"] == "registry.example.com/pc/controller:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"] == ["run", "--leader-elect", "--mesh-config=istio",
                         "--gateway-namespaces=istio-system", "--metrics-addr=:9091",
                         "--revision=canary", "--mesh-namespace=istio-control",
                         "--egress-service-entries", "--log-level=debug"]
    assert c["resources"]["limits"] == {"cpu": "100m", "memory": "48Mi"}
    assert ctl["imagePullSecrets"] == [{"name": "regcred"}]
    assert ctl["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert ctl["tolerations"][0]["key"] == "dedicated"
    assert ctl["priorityClassName"] == "system-cluster-critical"
    assert "requiredDuringSchedulingIgnoredDuringExecution" in ctl["affinity"]["podAntiAffinity"]
    meta = find(chart, "Deployment", "portcullis-controller")["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"example.com/a": "1"}
    assert meta["labels"]["team"] == "platform"
    assert find(chart, "Deployment", "portcullis-controller")["spec"]["replicas"] == 3
    assert find(chart, "PodDisruptionBudget", "portcullis-controller")["spec"]["minAvailable"] == 1

    a = authd["containers"][0]
    assert a["image"] == "registry.example.com/pc/authd:0.1.0"  # the chart's appVersion
    assert a["args"] == ["--watch-config", "--cookie-secret-file=/etc/portcullis/cookie/secret",
                         "--log-level=debug"]
    assert list(authd["affinity"]) == ["nodeAffinity"]  # affinity replaces the preset
    assert authd["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert find(chart, "Deployment", "portcullis-authd")["spec"]["replicas"] == 4
    pdb = find(chart, "PodDisruptionBudget", "portcullis-authd")["spec"]
    assert pdb["maxUnavailable"] == "25%" and "minAvailable" not in pdb
    # The selector never takes podLabels: Deployments' selectors are immutable.
    assert find(chart, "Deployment", "portcullis-controller")["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "portcullis-controller"}}
    roles = [d for _, d in chart if d["kind"] in ("Role", "RoleBinding")
             and d["metadata"]["namespace"] == "istio-control"]
    assert len(roles) == 2


@pytest.mark.parametrize("setting, field", [
    ("meshConfig.mode=istiod", "/meshConfig/mode"),
    ("logLevel=verbose", "/logLevel"),
    ("authd.replicas=-1", "/authd/replicas"),
    ("controller.replicas=two", "/controller/replicas"),
    ("authd.image.pullPolicy=Sometimes", "/authd/image/pullPolicy"),
    ("authd.replica=3", "/authd"),
    ("cookieSecret.existingSecret=Bad_Name", "/cookieSecret/existingSecret"),
    ("meshConfig.revision=1.2", "/meshConfig/revision"),
    ("meshConfig.egressServiceEntries=yes", "/meshConfig/egressServiceEntries"),
    ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"),
    ("metrics.prometheusRule.idpErrorRatio=2", "/metrics/prometheusRule/idpErrorRatio"),
    ("authd.podAntiAffinity=always", "/authd/podAntiAffinity"),
    ("networkPolicy.authdFrom=everyone", "/networkPolicy/authdFrom"),
    ("gatewayNamespaces={Istio}", "/gatewayNamespaces/0"),
    ("admissionPolicy.enabled=maybe", "/admissionPolicy/enabled"),
])
def test_schema_refuses_bad_values(setting, field):
    proc = helm("template", "x", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert f"at '{field}'" in proc.stderr, proc.stderr


def test_rules_need_the_service_monitor():
    proc = helm("template", "x", str(CHART), "--set", "metrics.prometheusRule.enabled=true",
                check=False)
    assert proc.returncode != 0
    assert "metrics.prometheusRule.enabled needs metrics.serviceMonitor.enabled" in proc.stderr


def monitoring_check(text: str) -> set[str]:
    proc = subprocess.run([tools()["PORTCULLIS_MONITORING_CHECK"], "-dashboard",
                           str(CHART / "dashboards" / "portcullis.json")], input=text,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 ServiceMonitor, 1 PrometheusRule" in proc.stderr
    return set(proc.stdout.split())


def rendered(*args: str) -> str:
    return helm("template", "portcullis", str(CHART), "-n", NS, *args).stdout


def test_monitoring_objects():
    chart = template(*MONITORING, "--set", "metrics.prometheusRule.alertLabels.team=platform",
                     "--set", "metrics.dashboard.namespace=grafana")
    names = monitoring_check(rendered(*MONITORING))
    assert {n for n in names if not n.startswith("portcullis_")} == {"up"}
    rules = find(chart, "PrometheusRule", "portcullis")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"PortcullisAuthdDown", "PortcullisDenialsSpiking",
                                           "PortcullisIdPErrors", "PortcullisConfigRejected"}
    for r in rules:
        assert r["labels"]["team"] == "platform", r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
    # The ServiceMonitor's selector finds exactly the two metrics Services, by port name.
    sm = find(chart, "ServiceMonitor", "portcullis")["spec"]
    svcs = [d for _, d in chart if d["kind"] == "Service"
            and all(d["metadata"]["labels"].get(k) == v
                    for k, v in sm["selector"]["matchLabels"].items())]
    assert sorted(s["metadata"]["name"] for s in svcs) == ["portcullis-authd-metrics",
                                                           "portcullis-controller-metrics"]
    ports = {p["name"] for s in svcs for p in s["spec"]["ports"]}
    assert ports == {e["port"] for e in sm["endpoints"]} == {"admin", "metrics"}
    # The rules' job labels are those Services' names (the Prometheus Operator's default job).
    exprs = " ".join(r["expr"] for r in rules)
    assert 'job="portcullis-authd-metrics"' in exprs
    assert 'job="portcullis-controller-metrics"' in exprs
    dash = find(chart, "ConfigMap", "portcullis-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["namespace"] == "grafana"
    assert json.loads(dash["data"]["portcullis.json"])["uid"] == "portcullis"
    # The main Service never exposes the admin port.
    assert [p["name"] for p in find(chart, "Service", "portcullis-authd")["spec"]["ports"]] == \
        ["http"]


def test_monitoring_check_refuses_what_prometheus_would():
    """monitoring-check fails on a bad expression and an unknown field (so a pass means it)."""
    good = rendered(*MONITORING)
    with pytest.raises(AssertionError, match="alert PortcullisIdPErrors"):
        monitoring_check(good.replace('result!="ok"}[5m]))', 'result!="ok"}[5m])'))
    with pytest.raises(AssertionError, match="unknown field"):
        monitoring_check(good.replace("      scrapeTimeout:", "      scrapeTimout:"))


def test_readme_values_table_is_generated():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "chart-readme.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_crd_copy_matches_crds():
    for name in ("protectedhost.yaml", "protectedhostpolicy.yaml"):
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()


# ---- against the real apiserver ---------------------------------------------------------------

needs_apiserver = pytest.mark.skipif(skip_e2e(), reason="PORTCULLIS_SKIP_E2E=1")


@pytest.fixture(scope="module")
def cluster(api_server):
    """The apiserver with Istio's CRDs and namespace, as on a cluster with Istio installed."""
    api_server.install_istio_crds()
    api_server.kubectl("create", "namespace", "istio-system")
    return api_server


def kget(api, *args) -> dict:
    return json.loads(api.kubectl("get", *args, "-o", "json").stdout)


def cookie_value(api) -> str:
    return kget(api, "secret", "portcullis-cookie-secret", "-n", NS)["data"]["secret"]


def can_i(api, who, *args) -> str:
    return api.kubectl("auth", "can-i", f"--as={who}", *args, check=False).stdout.strip()


@needs_apiserver
def test_install_upgrade_uninstall(cluster):
    api = cluster
    kc = api.kubeconfig
    bad = helm("install", "portcullis", str(CHART), "-n", NS, "--create-namespace",
               "--set", "meshConfig.mode=istiod", kubeconfig=kc, check=False)
    assert bad.returncode != 0 and "at '/meshConfig/mode'" in bad.stderr, bad.stderr

    helm("install", "portcullis", str(CHART), "-n", NS, "--create-namespace", kubeconfig=kc)
    for dep in ("portcullis-controller", "portcullis-authd"):
        assert kget(api, "deployment", dep, "-n", NS)["spec"]["replicas"] == 2
    api.kubectl("get", "service/portcullis-authd", "pdb/portcullis-authd", "-n", NS)
    api.kubectl("get", "role/portcullis-controller-mesh", "-n", "istio-system")
    api.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                "crd/protectedhosts.portcullis.io")
    first = cookie_value(api)
    assert len(base64.b64decode(base64.b64decode(first))) == 32

    # The same rights as deploy/ (e2e/tests/test_deploy.py lists them).
    assert can_i(api, CONTROLLER_SA, "patch", "secrets/portcullis-authd-config-00", "-n", NS) == "yes"
    assert can_i(api, CONTROLLER_SA, "patch", "secrets/portcullis-authd-config", "-n", NS) == "no"
    assert can_i(api, CONTROLLER_SA, "update", "configmaps/istio", "-n", "istio-system") == "yes"
    assert can_i(api, CONTROLLER_SA, "patch", "secrets/portcullis-cookie-secret", "-n", NS) == "no"
    assert can_i(api, CONTROLLER_SA, "delete", "pods", "-n", NS) == "no"
    assert can_i(api, AUTHD_SA, "get", "secrets", "-n", NS) == "yes"  # its config shards
    assert can_i(api, AUTHD_SA, "get", "secrets", "-n", "default") == "no"

    # An upgrade that changes things keeps the cookie secret: nobody is signed out.
    helm("upgrade", "portcullis", str(CHART), "-n", NS, "--set", "logLevel=debug",
         "--set", "networkPolicy.enabled=true", "--set", "metrics.dashboard.enabled=true",
         "--set", "authd.replicas=3", kubeconfig=kc)
    assert cookie_value(api) == first
    spec = kget(api, "deployment", "portcullis-authd", "-n", NS)["spec"]
    assert spec["replicas"] == 3
    assert "--log-level=debug" in spec["template"]["spec"]["containers"][0]["args"]
    api.kubectl("get", "networkpolicy/portcullis-authd", "networkpolicy/portcullis-controller",
                "configmap/portcullis-dashboard", "-n", NS)
    assert json.loads(helm("status", "portcullis", "-n", NS, "-o", "json",
                           kubeconfig=kc).stdout)["version"] == 2

    # Uninstall removes everything but the kept cookie Secret and the CRD (helm never deletes
    # crds/); a reinstall adopts the Secret and keeps its value.
    helm("uninstall", "portcullis", "-n", NS, "--wait", "--timeout", "60s", kubeconfig=kc)
    gone = api.kubectl("get", "deployment/portcullis-authd", "-n", NS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert cookie_value(api) == first
    api.kubectl("get", "crd/protectedhosts.portcullis.io")
    helm("install", "portcullis", str(CHART), "-n", NS, kubeconfig=kc)
    assert cookie_value(api) == first
    helm("uninstall", "portcullis", "-n", NS, "--wait", "--timeout", "60s", kubeconfig=kc)


@needs_apiserver
def test_install_with_existing_secret_and_shared_mode(cluster):
    api = cluster
    ns = "auth"
    api.kubectl("create", "namespace", ns)
    api.kubectl("-n", ns, "create", "secret", "generic", "mine",
                "--from-literal=secret=" + "x" * 40)
    helm("install", "pc", str(CHART), "-n", ns, "--set", "cookieSecret.existingSecret=mine",
         "--set", "meshConfig.mode=shared", kubeconfig=api.kubeconfig)
    api.kubectl("get", "configmap/portcullis-mesh", "-n", "istio-system")
    none = api.kubectl("get", "secret/portcullis-cookie-secret", "-n", ns, check=False)
    assert none.returncode != 0
    helm("uninstall", "pc", "-n", ns, "--wait", "--timeout", "60s", kubeconfig=api.kubeconfig)
    # Yours stays yours.
    api.kubectl("get", "secret/mine", "-n", ns)


def exported(text: str) -> set[str]:
    """The sample names a Prometheus text exposition can carry (histograms' too)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names |= {name} | ({f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                               if kind == "histogram" else set())
    return names


@needs_apiserver
def test_alerts_and_dashboard_use_exported_metrics(cluster, tmp_path):
    used = monitoring_check(rendered(*MONITORING)) - {"up"}

    authd = Authd("authd-chart", lambda c: config_head(c) + "hosts: []\n",
                  cookie_secret="0123456789abcdef0123456789abcdef-chart\n")
    port = free_port()
    ctl = Proc("controller-chart", [built(CONTROLLER, "PORTCULLIS_CONTROLLER"), "run",
                                    "--kubeconfig", cluster.kubeconfig, "--leader-elect=false",
                                    "--metrics-addr", f"127.0.0.1:{port}"],
               log_path=tmp_path / "controller.log")
    with authd.start(), ctl.start():
        ctl.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        have = exported(authd.metrics())
        have |= wait_for("controller /metrics", lambda: exported(
            http("GET", f"http://127.0.0.1:{port}/metrics")[2].decode()), ignore=(OSError,))
    assert used - have == set(), f"not exported: {sorted(used - have)}"
