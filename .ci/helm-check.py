"""The checks of .ci/helm on the chart, run inside target/helm-venv.

For each values file: `helm lint --strict` and the values schema (Helm 4's Go SDK through
helm-python-sdk's libhelm_c), `helm template` (the same SDK's renderer, as an install), every
rendered manifest against the Kubernetes OpenAPI schemas of each version asked for
(kubernetes-validate, strict: unknown fields are errors), and the chart's own promises (no
secret value outside a Secret, non-root, read-only root filesystem, probes on the right ports).
Then values that must be refused are refused. Rendered manifests are written to OUT for yamllint.
With WBD_API_BIN set to a wbd-api binary, the environment each rendered container gets is handed
to that binary's own settings loader (`wbd-api healthcheck` loads and validates the settings
before it tries to connect), so the chart's way of writing settings is checked against the code.

    python .ci/helm-check.py CHART OUT KUBE_VERSIONS VALUES_FILE...
"""

import copy
import os
import pathlib
import subprocess
import sys

import helm_python as helm
import kubernetes_validate
import yaml

# Kinds whose schema is a CRD, not part of Kubernetes: kubernetes-validate has no schema for them.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def merge(base, patch):
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def lint(chart, values, label):
    report = helm.lint(chart, values, strict=True)
    for message in report.get("messages", []):
        # 1 = info ("icon is recommended"), 2 = warning, 3 = error.
        if message["severity"] >= 2:
            fail(f"{label}: helm lint: {message['path']}: {message['error']}")
    for error in report.get("errors") or []:
        fail(f"{label}: helm lint: {error}")


def render(chart, values):
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(values)
        return loaded.render(values, name="wbd", namespace="wbd", is_install=True)


def documents(rendered):
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield path, doc


def check_promises(label, docs, values):
    secret_values = [
        v
        for v in (values.get("secrets") or {}).values()
        if isinstance(v, str) and v and v != values["secrets"].get("existingSecret")
    ]
    kinds = {}
    for path, doc in docs:
        kind = doc["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind != "Secret":
            text = yaml.safe_dump(doc)
            for secret in secret_values:
                if secret in text:
                    fail(f"{label}: {path}: a secret value appears in a {kind}")
        spec = doc.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        pod_security = spec.get("securityContext", {})
        if not pod_security.get("runAsNonRoot") or not pod_security.get("runAsUser"):
            fail(f"{label}: {path}: pod is not non-root with a numeric user")
        if spec.get("automountServiceAccountToken") is not False:
            fail(f"{label}: {path}: a service-account token is mounted")
        for container in spec["containers"]:
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem"):
                fail(f"{label}: {path}: {container['name']} has a writable root filesystem")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(f"{label}: {path}: {container['name']} keeps capabilities")
            if container["image"].endswith(":latest") or ":" not in container["image"]:
                fail(f"{label}: {path}: {container['name']} image is not pinned: {container['image']}")
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container and container["name"] in ("api", "worker"):
                    port = container[probe]["httpGet"]["port"]
                    if port not in ports:
                        fail(f"{label}: {path}: {probe} uses port {port}, which the container does not name")
            if container["name"] == "api" and env.get("WBD_SERVER__LISTEN") != f"0.0.0.0:{ports['http']}":
                fail(f"{label}: {path}: server.listen does not match the container port")
            if container["name"] == "worker" and env.get("WBD_WORKER__LISTEN") != f"0.0.0.0:{ports['health']}":
                fail(f"{label}: {path}: worker.listen does not match the container port")
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "Job"):
        if kind not in kinds:
            fail(f"{label}: no {kind} rendered")
    return kinds


def validate(label, docs, kube_versions):
    checked = skipped = 0
    for path, doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            skipped += 1
            continue
        for version in kube_versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{label}: {path}: {doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): "
                     f"{e.message} at {'.'.join(map(str, e.path))}")
            except Exception as e:  # an unknown version or kind is a failure, not a skip
                fail(f"{label}: {path}: {doc['kind']} (Kubernetes {version}): {e}")
        checked += 1
    return checked, skipped


def check_settings(label, docs, binary):
    """Every container's environment, with made-up secrets, passes wbd-api's settings loader."""
    made_up = {
        "DATABASE_URL": "postgres://wbd@127.0.0.1:9/wbd",
        "AMQP_URL": "amqp://wbd@127.0.0.1:9/%2f",
        "WBD_DELIVERY__SECRETS_KEY": "qPq0u6k3n3Uu2dDq3l0m4n5o6p7q8r9s0t1u2v3w4x4=",
        "WBD_DELIVERY__PREVIOUS_SECRETS_KEYS": '["qPq0u6k3n3Uu2dDq3l0m4n5o6p7q8r9s0t1u2v3w4x4="]',
    }
    checked = 0
    for path, doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec")
        for container in (spec or {}).get("containers", []):
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for var in container.get("env", []):
                if "value" in var:
                    env[var["name"]] = var["value"]
                elif var["name"] in made_up:
                    env[var["name"]] = made_up[var["name"]]
            # Nothing listens on port 9 (discard): the health check fails to connect, after the
            # settings were loaded and validated.
            env["WBD_SERVER__LISTEN"] = "127.0.0.1:9"
            env["WBD_WORKER__LISTEN"] = "127.0.0.1:9"
            run = subprocess.run([binary, "healthcheck"], env=env, capture_output=True, text=True, timeout=60)
            if "configuration" in run.stderr or "/healthz" not in run.stderr:
                fail(f"{label}: {path}: {container['name']}: the settings loader refused the environment: "
                     f"{run.stderr.strip()[:400]}")
            checked += 1
    return checked


# Values that must be refused, each on top of ci/default-values.yaml.
MUST_REFUSE = {
    "image.tag latest": {"image": {"tag": "latest"}},
    "a setting the schema does not know": {"config": {"delivery": {"concurrence": 4}}},
    "a secret under config": {"config": {"delivery": {"secrets_key": "x"}}},
    "a section the settings do not have": {"config": {"retention_days": {"x": 1}}},
    "worker.embedded under config": {"config": {"worker": {"embedded": True}}},
    "a setting of the wrong type": {"config": {"worker": {"concurrency": "four"}}},
    "rules.open_after out of range": {"config": {"rules": {"open_after": 21}}},
    "a secrets key that is not 32 bytes of base64": {"secrets": {"secretsKey": "c2hvcnQ="}},
    "a database URL that is not PostgreSQL": {"secrets": {"databaseUrl": "sqlite://wbd.db"}},
    "no secrets key and no existing Secret": {"secrets": {"secretsKey": ""}},
    "an existing Secret and values beside it": {"secrets": {"existingSecret": "wbd-secrets"}},
    "an unknown top-level key": {"replicaCount": 3},
    "a PDB without minAvailable": {"api": {"podDisruptionBudget": {"minAvailable": None}}},
}


def main():
    chart, out, kube_versions, *value_files = sys.argv[1:]
    kube_versions = kube_versions.split(",")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = None
    for value_file in value_files:
        label = pathlib.Path(value_file).name
        values = yaml.safe_load(open(value_file))
        base = base or values
        lint(chart, values, label)
        try:
            rendered = render(chart, values)
        except Exception as e:
            fail(f"{label}: helm template: {e}")
            continue
        docs = list(documents(rendered))
        kinds = check_promises(label, docs, values)
        checked, skipped = validate(label, docs, kube_versions)
        binary = os.environ.get("WBD_API_BIN")
        loaded = check_settings(label, docs, binary) if binary else 0
        target = out / label.replace(".yaml", "")
        target.mkdir(exist_ok=True)
        for path, text in rendered.items():
            if path.endswith(".yaml") and text.strip():
                (target / pathlib.Path(path).name).write_text(text)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(f"ok   {label}: lint, schema, template ({summary}); {checked} manifests valid against "
              f"Kubernetes {', '.join(kube_versions)} (strict); {skipped} CRD manifest(s) not schema-checked; "
              f"{loaded} container environments accepted by {binary or 'no'} wbd-api settings loader")
    for label, patch in MUST_REFUSE.items():
        values = merge(base, patch)
        try:
            render(chart, values)
        except Exception as e:
            reason = " ".join(line.strip() for line in str(e).strip().splitlines())[:200]
            print(f"ok   refused: {label}: {reason}")
        else:
            fail(f"accepted values that must be refused: {label}")
    if failures:
        print(f"\n{len(failures)} failure(s)")
        sys.exit(1)


main()
