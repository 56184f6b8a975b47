#!/usr/bin/env bash
# Offline validation of deploy/: Kubernetes manifests, ServiceMonitor, Grafana dashboard and
# the Containerfile. Exits non-zero when anything is invalid.
#
#   deploy/validate.sh [--self-test] [DIR]
#
# DIR defaults to the directory of this script (the Containerfile is looked up in DIR/..).
# --self-test also breaks copies of the files in several ways and checks that each is rejected.
#
# Needs python3 (with pip, or venv) and, installed from PyPI when missing, kubernetes-validate (bundles the
# Kubernetes JSON schemas: no network needed besides PyPI for the installation) and
# promql-parser. The ServiceMonitor is a CRD whose schema kubernetes-validate does not bundle:
# it is checked by the cross-checks below instead.
set -euo pipefail

self_test=0
if [[ "${1:-}" == "--self-test" ]]; then
    self_test=1
    shift
fi
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(cd "${1:-$script_dir}" && pwd)"
PY="${PYTHON:-python3}"
# The oldest Kubernetes the manifests support (recursiveReadOnly, appArmorProfile), and the
# newest whose schemas kubernetes-validate bundles (added below).
KUBE_MIN=1.30.0

REQUIREMENTS=('kubernetes-validate>=1.30.0' 'promql-parser>=0.5')
IMPORTS='import kubernetes_validate, promql_parser, yaml'
# Where they go when this python3's pip refuses (PEP 668 "externally managed" distributions).
venv="${XDG_CACHE_HOME:-$HOME/.cache}/leaktracer-validate-venv"
if ! "$PY" -c "$IMPORTS" 2>/dev/null; then
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$IMPORTS" 2>/dev/null; then
        PY="$venv/bin/python"
    else
        echo "validate.sh: installing ${REQUIREMENTS[*]} from PyPI" >&2
        if ! "$PY" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2; then
            echo "validate.sh: pip refused; installing into $venv instead" >&2
            "$PY" -m venv "$venv" >&2
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
            PY="$venv/bin/python"
        fi
    fi
fi
export PYTHON="$PY" # for the copies the self-test runs

if [[ $self_test == 1 ]]; then
    # Every mutation must make the plain validation fail.
    failures=0
    mutate() { # description file python-expression-on-s
        local desc="$1" file="$2" expr="$3" tmp
        tmp="$(mktemp -d)"
        mkdir -p "$tmp/deploy"
        cp "$dir"/*.yaml "$dir"/*.json "$dir"/README.md "$tmp/deploy/"
        cp "$dir/../Containerfile" "$tmp/Containerfile"
        "$PY" - "$tmp/deploy/$file" "$expr" <<'EOF'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path).read()
t = eval(expr, {"s": s})
assert t != s, "mutation changed nothing: " + expr
open(path, "w").write(t)
EOF
        if "$script_dir/validate.sh" "$tmp/deploy" >"$tmp/out" 2>&1; then
            echo "SELF-TEST FAIL: accepted: $desc"
            failures=$((failures + 1))
        else
            echo "self-test ok: rejected: $desc: $(grep -m1 -E '^ *ERROR' "$tmp/out" | sed 's/^ *//' | cut -c1-160)"
        fi
        rm -rf "$tmp"
    }
    mutate "misspelt field" leaktracer.yaml 's.replace("readinessProbe:", "redinessProbe:")'
    mutate "duplicate key" leaktracer.yaml 's.replace("      hostPID: true\n", "      hostPID: true\n      hostPID: false\n")'
    mutate "wrong kind" leaktracer.yaml 's.replace("kind: DaemonSet", "kind: Daemonset")'
    mutate "bad enum value" leaktracer.yaml 's.replace("type: RuntimeDefault", "type: Runtimedefault")'
    mutate "writable hostPath" leaktracer.yaml 's.replace("mountPath: /host/var/log/pods\n              readOnly: true", "mountPath: /host/var/log/pods\n              readOnly: false", 1)'
    mutate "hostPath that may create" leaktracer.yaml 's.replace("path: /var/log/pods\n            type: Directory", "path: /var/log/pods\n            type: DirectoryOrCreate", 1)'
    mutate "RBAC object" leaktracer.yaml 's + "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: leaktracer\nrules: []\n"'
    mutate "extra capability" leaktracer.yaml 's.replace("- SYS_RESOURCE", "- SYS_RESOURCE\n                - NET_ADMIN")'
    mutate "probe on unknown port" leaktracer.yaml 's.replace("port: metrics", "port: metric", 1)'
    mutate "selector not matching" leaktracer.yaml 's.replace("  selector:\n    app.kubernetes.io/name: leaktracer", "  selector:\n    app.kubernetes.io/name: leaktracr")'
    mutate "annotation port differs" leaktracer.yaml 's.replace("prometheus.io/port: \"9464\"", "prometheus.io/port: \"9465\"")'
    mutate "privileged variant drifted" leaktracer-privileged.yaml 's.replace("--top=50", "--top=40")'
    mutate "ServiceMonitor port" servicemonitor.yaml 's.replace("- port: metrics", "- port: http")'
    mutate "ServiceMonitor unknown field" servicemonitor.yaml 's.replace("honorLabels: true", "honourLabels: true")'
    mutate "dashboard unknown metric" grafana-dashboard.json 's.replace("leaktracer_tracked_processes", "leaktracer_tracked_procs", 1)'
    # shellcheck disable=SC2016 # $top is Grafana's, not the shell's
    mutate "dashboard bad PromQL" grafana-dashboard.json 's.replace("topk($top,", "topk($top", 1)'
    mutate "dashboard invalid JSON" grafana-dashboard.json 's.replace("{", "", 1)'
    if [[ $failures -gt 0 ]]; then
        echo "validate.sh --self-test: $failures mutation(s) accepted"
        exit 1
    fi
    echo "validate.sh --self-test: every mutation rejected"
    # and the real files must pass
fi

latest="$("$PY" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')"
passed=0
failed=0

# 1. Kubernetes JSON schemas, strict (unknown fields are errors). kubernetes-validate exits 0
#    when it has no schema for a kind, so its WARN lines are failures too, except for the CRD.
for f in "$dir"/*.yaml; do
    name="$(basename "$f")"
    set +e
    out="$("$PY" -m kubernetes_validate --strict -k "$KUBE_MIN" -k "$latest" "$f" 2>&1)"
    rc=$?
    set -e
    bad="$(grep -vE '^INFO ' <<<"$out" | grep -vE "^WARN .*kind ServiceMonitor with api version monitoring\.coreos\.com/" || true)"
    if [[ $rc -ne 0 || -n "$bad" ]]; then
        echo "FAIL schema: $name"
        # shellcheck disable=SC2001
        sed 's/^/  /' <<<"$out"
        failed=$((failed + 1))
    else
        n="$(grep -c '^INFO ' <<<"$out" || true)"
        if [[ $n == 0 ]]; then
            echo "ok   schema: $name (a CRD: no bundled schema; checked below)"
        else
            echo "ok   schema: $name ($n objects x versions passed, Kubernetes $KUBE_MIN and $latest)"
        fi
        passed=$((passed + 1))
    fi
done

# 2. What the schemas leave to the API server, this project's rules, and cross-file checks.
#    The Python part prints one line per check and "CHECKS <passed> <failed>" last.
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
set +e
"$PY" - "$dir" >"$report" 2>&1 <<'EOF'
import glob, json, os, re, sys

import yaml

d = sys.argv[1]
results = []  # (ok, name, errors, notes)


class Errors(list):
    """A check's errors; .notes are printed but do not fail it."""

    def __init__(self):
        super().__init__()
        self.notes = []


def check(name):
    def deco(fn):
        errs = Errors()
        try:
            fn(errs)
        except Exception as e:  # a crash in a check is a failure, not a pass
            errs.append(f"{type(e).__name__}: {e}")
        results.append((not errs, name, list(errs), errs.notes))
        return fn
    return deco


class StrictLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of duplicate keys; the API server refuses them."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path):
    with open(path) as f:
        return [o for o in yaml.load_all(f, Loader=StrictLoader) if o]


files = {}
for path in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    try:
        files[os.path.basename(path)] = load(path)
    except yaml.YAMLError as e:
        files[os.path.basename(path)] = []
        results.append((False, f"YAML: {os.path.basename(path)}", [str(e).replace(chr(10), " ")], []))
MIN, PRIV, SM = "leaktracer.yaml", "leaktracer-privileged.yaml", "servicemonitor.yaml"


def objs(fname, kind):
    return [o for o in files.get(fname, []) if o.get("kind") == kind]


def one(fname, kind):
    found = objs(fname, kind)
    if len(found) != 1:
        raise ValueError(f"{fname}: expected one {kind}, found {len(found)}")
    return found[0]


CAPS = set("""AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN
DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE
MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP
SETGID SETPCAP SETUID SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT
SYS_PTRACE SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM ALL""".split())
ENUMS = {
    "seccompProfile.type": {"RuntimeDefault", "Unconfined", "Localhost"},
    "appArmorProfile.type": {"RuntimeDefault", "Unconfined", "Localhost"},
    "recursiveReadOnly": {"Disabled", "IfPossible", "Enabled"},
    "mountPropagation": {"None", "HostToContainer", "Bidirectional"},
    "protocol": {"TCP", "UDP", "SCTP"},
    "hostPath.type": {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"},
    "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "toleration.operator": {"Exists", "Equal"},
    "toleration.effect": {"NoSchedule", "PreferNoSchedule", "NoExecute"},
    "updateStrategy.type": {"RollingUpdate", "OnDelete"},
    "service.type": {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    "scopeSelector.operator": {"In", "NotIn", "Exists", "DoesNotExist"},
    "scopeName": {"Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity", "VolumeAttributesClass"},
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def enum(errs, key, value, where):
    if value is not None and value not in ENUMS[key]:
        errs.append(f"{where}: {key} {value!r} not one of {sorted(ENUMS[key])}")


def api_rules(errs, fname):
    """Rules the API server enforces that the JSON schemas do not encode."""
    for o in files[fname]:
        name = o.get("metadata", {}).get("name", "")
        if not DNS_LABEL.match(name):
            errs.append(f"{fname}: {o.get('kind')} name {name!r} is not a DNS label")
        if o.get("kind") == "ResourceQuota":
            for e in o["spec"].get("scopeSelector", {}).get("matchExpressions", []):
                enum(errs, "scopeName", e.get("scopeName"), fname)
                enum(errs, "scopeSelector.operator", e.get("operator"), fname)
        if o.get("kind") == "Service":
            enum(errs, "service.type", o["spec"].get("type"), fname)
            for p in o["spec"].get("ports", []):
                enum(errs, "protocol", p.get("protocol"), fname)
                if "name" in p and not PORT_NAME.match(p["name"]):
                    errs.append(f"{fname}: Service port name {p['name']!r} is not an IANA service name")
        if o.get("kind") != "DaemonSet":
            continue
        spec = o["spec"]
        enum(errs, "updateStrategy.type", spec.get("updateStrategy", {}).get("type"), fname)
        tmpl = spec["template"]
        labels = tmpl["metadata"].get("labels", {})
        for k, v in spec["selector"].get("matchLabels", {}).items():
            if labels.get(k) != v:
                errs.append(f"{fname}: DaemonSet selector {k}={v} does not match the pod template's labels")
        pod = tmpl["spec"]
        for t in pod.get("tolerations", []):
            enum(errs, "toleration.operator", t.get("operator"), fname)
            enum(errs, "toleration.effect", t.get("effect"), fname)
            if t.get("operator") == "Exists" and t.get("value"):
                errs.append(f"{fname}: toleration with operator Exists must not have a value")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "hostPath" in v:
                enum(errs, "hostPath.type", v["hostPath"].get("type"), fname)
        for c in pod["containers"]:
            where = f"{fname}: container {c['name']}"
            enum(errs, "imagePullPolicy", c.get("imagePullPolicy"), where)
            ports = {p.get("name"): p for p in c.get("ports", [])}
            for p in c.get("ports", []):
                enum(errs, "protocol", p.get("protocol"), where)
                if "name" in p and not PORT_NAME.match(p["name"]):
                    errs.append(f"{where}: port name {p['name']!r} is not an IANA service name")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errs.append(f"{where}: {probe} uses port {port!r}, which the container does not name")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    errs.append(f"{where}: volumeMount {m['name']!r} has no volume")
                enum(errs, "recursiveReadOnly", m.get("recursiveReadOnly"), where)
                enum(errs, "mountPropagation", m.get("mountPropagation"), where)
                if m.get("recursiveReadOnly") in ("IfPossible", "Enabled"):
                    if not m.get("readOnly") or m.get("mountPropagation") not in (None, "None"):
                        errs.append(f"{where}: recursiveReadOnly needs readOnly: true and no mount propagation ({m['name']})")
            sc = c.get("securityContext", {})
            enum(errs, "seccompProfile.type", sc.get("seccompProfile", {}).get("type"), where)
            enum(errs, "appArmorProfile.type", sc.get("appArmorProfile", {}).get("type"), where)
            caps = sc.get("capabilities", {})
            for cap in caps.get("add", []) + caps.get("drop", []):
                if cap.removeprefix("CAP_") not in CAPS:
                    errs.append(f"{where}: unknown capability {cap!r}")
            if sc.get("allowPrivilegeEscalation") is False:
                if sc.get("privileged"):
                    errs.append(f"{where}: allowPrivilegeEscalation: false with privileged: true is rejected")
                if {"SYS_ADMIN", "CAP_SYS_ADMIN"} & set(caps.get("add", [])):
                    errs.append(f"{where}: allowPrivilegeEscalation: false with CAP_SYS_ADMIN is rejected")


def container(fname):
    ds = one(fname, "DaemonSet")
    cs = ds["spec"]["template"]["spec"]["containers"]
    if len(cs) != 1:
        raise ValueError(f"{fname}: expected one container, found {len(cs)}")
    return ds, cs[0]


def project_rules(errs, fname, privileged):
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "Secret"):
        if objs(fname, kind):
            errs.append(f"{fname}: has a {kind}: leaktracer needs no API access")
    sa = one(fname, "ServiceAccount")
    if sa.get("automountServiceAccountToken") is not False:
        errs.append(f"{fname}: ServiceAccount must set automountServiceAccountToken: false")
    ns = one(fname, "Namespace")["metadata"]["name"]
    ds, c = container(fname)
    pod = ds["spec"]["template"]["spec"]
    for o in files[fname]:
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != ns:
            errs.append(f"{fname}: {o['kind']} {o['metadata']['name']} is not in namespace {ns}")
    expect = {"hostPID": True, "automountServiceAccountToken": False,
              "priorityClassName": "system-node-critical", "serviceAccountName": sa["metadata"]["name"]}
    for k, v in expect.items():
        if pod.get(k) != v:
            errs.append(f"{fname}: pod {k} must be {v!r}, is {pod.get(k)!r}")
    if pod.get("hostNetwork"):
        errs.append(f"{fname}: hostNetwork is not needed")
    if {"operator": "Exists"} not in pod.get("tolerations", []):
        errs.append(f"{fname}: needs a bare `operator: Exists` toleration to run on every node")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "hostPath" in v and m.get("readOnly") is not True:
            errs.append(f"{fname}: hostPath {v['hostPath']['path']} must be mounted readOnly")
        if "hostPath" in v and v["hostPath"].get("type") not in ("Directory", "File", "Socket"):
            errs.append(f"{fname}: hostPath {v['hostPath']['path']} must have a checking type, so nothing is created on the host")
    sc = c.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True or sc.get("runAsUser") != 0:
        errs.append(f"{fname}: needs readOnlyRootFilesystem: true and runAsUser: 0")
    if privileged:
        if sc.get("privileged") is not True:
            errs.append(f"{fname}: the privileged variant must set privileged: true")
    else:
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"] or sorted(caps.get("add", [])) != ["BPF", "PERFMON", "SYS_RESOURCE"]:
            errs.append(f"{fname}: capabilities must be drop [ALL], add exactly BPF, PERFMON, SYS_RESOURCE")
        if sc.get("privileged") or sc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"{fname}: must be privileged: false, allowPrivilegeEscalation: false")
    # One port, the same everywhere: --listen, containerPort, annotation, probes, Service.
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    listen = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--listen=")]
    if "metrics" not in ports or len(listen) != 1:
        errs.append(f"{fname}: needs a `metrics` container port and one --listen=ADDR:PORT arg")
        return
    port = ports["metrics"]
    if not listen[0].endswith(f":{port}"):
        errs.append(f"{fname}: --listen {listen[0]} differs from containerPort {port}")
    ann = ds["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(port) or ann.get("prometheus.io/path") != "/metrics":
        errs.append(f"{fname}: prometheus.io annotations must be scrape \"true\", port \"{port}\", path /metrics")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path or g.get("port") not in ("metrics", port):
            errs.append(f"{fname}: {probe} must GET {path} on the metrics port")
    svc = one(fname, "Service")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    if not svc["spec"].get("selector") or any(pod_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        errs.append(f"{fname}: Service selector does not select the DaemonSet's pods")
    if svc["spec"].get("clusterIP") != "None":
        errs.append(f"{fname}: Service must be headless (clusterIP: None)")
    if svc["metadata"].get("annotations", {}).get("prometheus.io/scrape"):
        errs.append(f"{fname}: the Service must not carry prometheus.io annotations (double scraping)")
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") not in ("metrics", port) or p.get("port") != port:
            errs.append(f"{fname}: Service port {p} does not lead to the metrics port")


for fname, priv in ((MIN, False), (PRIV, True)):
    @check(f"API-server rules: {fname}")
    def _(errs, fname=fname):
        api_rules(errs, fname)

    @check(f"project rules: {fname}")
    def _(errs, fname=fname, priv=priv):
        project_rules(errs, fname, priv)


@check("privileged variant = minimal one except the container securityContext")
def _(errs):
    def strip(fname):
        out = []
        for o in files[fname]:
            o = json.loads(json.dumps(o))
            if o["kind"] == "DaemonSet":
                for c in o["spec"]["template"]["spec"]["containers"]:
                    c.pop("securityContext", None)
            out.append(o)
        return out
    a, b = strip(MIN), strip(PRIV)
    if a != b:
        for x, y in zip(a, b):
            if x != y:
                errs.append(f"{x['kind']} {x['metadata']['name']} differs between {MIN} and {PRIV}")
        if len(a) != len(b):
            errs.append(f"{MIN} has {len(a)} objects, {PRIV} {len(b)}")


@check(f"ServiceMonitor: {SM}")
def _(errs):
    # The fields of monitoring.coreos.com/v1 ServiceMonitor this example may use; the real CRD
    # has more, but anything else here is most likely a typo.
    spec_keys = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels",
                 "sampleLimit", "targetLimit", "labelLimit", "attachMetadata", "scrapeClass"}
    ep_keys = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
               "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig", "followRedirects",
               "enableHttp2", "filterRunning"}
    rl_keys = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
    actions = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase",
               "uppercase", "keepequal", "dropequal"}
    sm = one(SM, "ServiceMonitor")
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        errs.append(f"apiVersion {sm.get('apiVersion')!r}")
    if set(sm) - {"apiVersion", "kind", "metadata", "spec"}:
        errs.append(f"unknown top-level fields {sorted(set(sm) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    spec = sm["spec"]
    if set(spec) - spec_keys:
        errs.append(f"unknown spec fields {sorted(set(spec) - spec_keys)}")
    svc = one(MIN, "Service")
    svc_ns = svc["metadata"]["namespace"]
    if any(svc["metadata"].get("labels", {}).get(k) != v for k, v in spec["selector"].get("matchLabels", {}).items()):
        errs.append("selector does not match the Service's labels")
    if svc_ns not in spec.get("namespaceSelector", {}).get("matchNames", [sm["metadata"].get("namespace")]):
        errs.append(f"namespaceSelector does not include {svc_ns}")
    port_names = {p.get("name") for p in svc["spec"]["ports"]}
    if not spec.get("endpoints"):
        errs.append("no endpoints")
    for ep in spec.get("endpoints", []):
        if set(ep) - ep_keys:
            errs.append(f"unknown endpoint fields {sorted(set(ep) - ep_keys)}")
        if ep.get("port") not in port_names:
            errs.append(f"endpoint port {ep.get('port')!r} is not a port name of the Service {sorted(port_names)}")
        if ep.get("honorLabels") is not True:
            errs.append("honorLabels must be true: leaktracer's namespace/pod/container labels name the traced container")
        for r in ep.get("relabelings", []) + ep.get("metricRelabelings", []):
            if set(r) - rl_keys:
                errs.append(f"unknown relabeling fields {sorted(set(r) - rl_keys)}")
            if r.get("action", "replace").lower() not in actions:
                errs.append(f"unknown relabeling action {r.get('action')!r}")
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not re.fullmatch(r"(\d+(ms|s|m|h))+", ep[k]):
                errs.append(f"{k} {ep[k]!r} is not a Prometheus duration")


def readme_metrics():
    text = open(os.path.join(d, "README.md")).read()
    section = text.split("## Metrics reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(leaktracer_[a-z_]+)` \| (gauge|counter) \|", section, re.M)
    return {name for name, _ in rows}


@check("Grafana dashboard: JSON, layout, PromQL, metric names")
def _(errs):
    import promql_parser

    dash = json.load(open(os.path.join(d, "grafana-dashboard.json")))
    documented = readme_metrics()
    if len(documented) < 10:
        errs.append(f"README metrics table: only {len(documented)} metrics found")
    used = set()
    ids = set()

    def exprs():
        for p in dash["panels"]:
            yield from ((p, t.get("expr", "")) for t in p.get("targets", []))
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
                yield v, m.group(1) if m else q

    for p in dash["panels"]:
        if p["id"] in ids:
            errs.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            errs.append(f"panel {p['title']!r} sticks out of the 24-column grid")
        if p["type"] != "row" and p.get("datasource", {}).get("uid") != "${datasource}":
            errs.append(f"panel {p['title']!r} does not use the $datasource variable")
    for owner, expr in exprs():
        title = owner.get("title") or owner.get("name")
        if not expr:
            errs.append(f"{title!r}: empty expression")
            continue
        concrete = re.sub(r"\$__(rate_interval|range|interval)\b", "5m", expr)
        concrete = concrete.replace("$top", "10")
        concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
        try:
            ast = promql_parser.parse(concrete)
        except Exception as e:
            errs.append(f"{title!r}: PromQL does not parse ({e}): {expr}")
            continue
        names = []
        if hasattr(promql_parser, "walk"):
            promql_parser.walk(ast, lambda n: names.append(n.name) if isinstance(n, promql_parser.VectorSelector) else None)
        else:
            names = re.findall(r"\b(leaktracer_[a-z_]+)\b", concrete)
        for n in names:
            if n not in documented:
                errs.append(f"{title!r}: metric {n} is not in README.md's metrics reference")
            used.add(n)
    for n in sorted(documented - used):
        errs.append(f"documented metric {n} is not on the dashboard")


@check("Containerfile")
def _(errs):
    path = os.path.join(d, "..", "Containerfile")
    lines = [l.strip() for l in open(path) if l.strip() and not l.lstrip().startswith("#")]
    # join continuation lines
    text = "\n".join(lines).replace("\\\n", " ")
    instr = [l.split(None, 1) for l in text.split("\n")]
    if not instr or instr[0][0].upper() != "FROM" or instr[0][1].strip() != "scratch":
        errs.append("must start FROM scratch")
    cmds = {i[0].upper(): i[1] for i in instr}
    if json.loads(cmds.get("ENTRYPOINT", "null")) != ["/leaktracer"]:
        errs.append('ENTRYPOINT must be ["/leaktracer"]')
    cmd = json.loads(cmds.get("CMD", "null")) or []
    if cmd[:1] != ["daemon"] or "--host-root" not in cmd:
        errs.append("CMD must run `daemon ... --host-root /host`")
    copies = [i[1] for i in instr if i[0].upper() == "COPY"]
    if copies != ["target/x86_64-unknown-linux-musl/release/leaktracer /leaktracer"]:
        errs.append(f"expected one COPY of the musl release binary, found {copies}")
    _, c = container(MIN)
    listen = cmd[cmd.index("--listen") + 1] if "--listen" in cmd else ""
    port = c["ports"][0]["containerPort"]
    if not listen.endswith(f":{port}"):
        errs.append(f"CMD --listen {listen!r} differs from the DaemonSet's port {port}")


@check("DaemonSet flags known to the leaktracer binary")
def _(errs):
    # A binary older than the sources may predate the flags (or be mid-change): its verdict is
    # printed but only counts when it is at least as new as every tracer-user source, or when
    # named explicitly with LEAKTRACER_BIN.
    import shutil, subprocess
    repo = os.path.join(d, "..")
    explicit = os.environ.get("LEAKTRACER_BIN", "")
    cands = [explicit] + sorted(glob.glob(os.path.join(repo, "target", "*", "leaktracer"))) \
        + sorted(glob.glob(os.path.join(repo, "target", "*", "*", "leaktracer"))) + [shutil.which("leaktracer") or ""]
    sources = glob.glob(os.path.join(repo, "tracer-user", "**", "*.rs"), recursive=True)
    newest_source = max((os.path.getmtime(f) for f in sources), default=0)
    for b in filter(None, cands):
        try:
            r = subprocess.run([b, "daemon", "--help"], capture_output=True, text=True, timeout=20)
        except OSError:
            continue
        if r.returncode != 0:
            continue
        _, c = container(MIN)
        problems = []
        for a in c["args"][1:]:
            flag = a.split("=", 1)[0]
            if flag.startswith("--") and not re.search(re.escape(flag) + r"(?![\w-])", r.stdout):
                problems.append(f"`{os.path.relpath(b, repo)} daemon --help` does not know {flag}")
        counts = bool(explicit) and b == explicit or os.path.getmtime(b) >= newest_source
        if counts:
            errs.extend(problems)
            errs.notes.append(f"checked against {os.path.relpath(b, repo)}")
        else:
            errs.notes.append(f"checked against {os.path.relpath(b, repo)}, older than the sources: not counted")
            errs.notes.extend(f"warning: {m}" for m in problems)
        return
    errs.notes.append("skipped: no leaktracer binary with a `daemon` subcommand found; set LEAKTRACER_BIN")


ok = True
for good, name, msgs, notes in results:
    print(("ok   " if good else "FAIL ") + name)
    for m in msgs:
        print("       ERROR " + m)
    for m in notes:
        print("       " + m)
    ok &= good
print(f"CHECKS {sum(r[0] for r in results)} {sum(not r[0] for r in results)}")
sys.exit(0 if ok else 1)
EOF
rc=$?
set -e
grep -v '^CHECKS ' "$report" || true
read -r _ p f < <(grep '^CHECKS ' "$report" || echo "CHECKS 0 1")
passed=$((passed + p))
failed=$((failed + f))
if [[ $rc -ne 0 && $f -eq 0 ]]; then
    failed=$((failed + 1)) # the checker itself crashed
fi

echo "validate.sh: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
