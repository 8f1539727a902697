"""deploy/k8s: every overlay renders with ``kubectl kustomize`` and every rendered document is valid
against the Kubernetes schemas (kubernetes-validate, offline, strict, a pinned version); then the
properties a platform team relies on, each of which a plausible edit could break.

No cluster is needed: ``kubectl kustomize`` only renders. Skipped, saying so, where kubectl is
not on PATH (CI and this machine have it at /usr/bin/kubectl).
"""

import base64
import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from pydantic import SecretStr

from intentloop.cli import cli
from intentloop.config_reference import sections
from intentloop.settings import Settings
from serving.watcher import FINAL_FLUSH_TIMEOUT_S
from serving.worker import GRACEFUL_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
# The schemas of the oldest Kubernetes the manifests target (the preStop `sleep` action is beta and
# on by default from 1.30; CronJob timeZone GA in 1.27). Strict: an unknown field is an error.
KUBERNETES_VERSION = "1.32.0"
GPU = "nvidia.com/gpu"
Doc = dict[str, Any]

# Which backing service each component must reach (and nothing else), by port.
POSTGRES, REDIS, KAFKA, S3, DNS = 5432, 6379, 9092, 443, 53
NEEDS = {
    "ingestion": {KAFKA, POSTGRES},
    "inference": {POSTGRES, REDIS, S3},
    "dashboard": {POSTGRES, REDIS},
    "trainer": {POSTGRES, REDIS, S3},
    "drift": {POSTGRES, REDIS, KAFKA},
    "migrations": {POSTGRES},
}
SERVED = {"inference": 8080, "dashboard": 8090}


def kustomize(path: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot render deploy/k8s (install kubectl >= 1.27)")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {o: kustomize(K8S / "overlays" / o) for o in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered[request.param]


# --------------------------------------------------------------------------- helpers


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(doc: Doc) -> Doc | None:
    """The pod template's spec of a workload (Deployment, Job, CronJob), else None."""
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    return template["spec"] if isinstance(template, dict) else None


def pod_labels(doc: Doc) -> dict[str, str]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def workloads(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    for doc in docs:
        spec = pod_spec(doc)
        if spec is not None:
            yield doc, spec


def containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    for doc, spec in workloads(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield doc, c


def component(docs: list[Doc], name: str) -> tuple[Doc, Doc]:
    found = [(d, s) for d, s in workloads(docs) if pod_labels(d)["app.kubernetes.io/component"] == name]
    assert len(found) == 1, f"expected one {name} workload, found {len(found)}"
    return found[0]


def config_data(docs: list[Doc]) -> dict[str, str]:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("intentloop-config")]
    data: dict[str, str] = cm["data"]
    return data


def secret_keys(docs: list[Doc]) -> set[str]:
    (secret,) = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"].startswith("intentloop-secrets")]
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and the In/NotIn/Exists operators)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


_UNITS = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("250m", "2", "1536Mi") as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match and match.group(2) in _UNITS, f"unparsed quantity {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]


def setting_names() -> tuple[set[str], set[str]]:
    """Every INTENTLOOP_* variable the settings read, and the secret ones among them."""
    names, secret = set(), set()
    for section in sections():
        for row in section.rows:
            names.add(row.env)
            field = section.model.model_fields[row.env[len(section.env_prefix) :].lower()]
            if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
                secret.add(row.env)
    return names, secret


def unwired(config: set[str], secret: set[str]) -> list[str]:
    """What is wrong with the ConfigMap/Secret split of the settings (empty: every one wired once)."""
    names, secret_names = setting_names()
    ours = {k for k in secret if k.startswith("INTENTLOOP_")}
    problems = [f"missing: {k}" for k in sorted(names - config - ours)]
    problems += [f"not a setting: {k}" for k in sorted((config | ours) - names)]
    problems += [f"secret in the ConfigMap: {k}" for k in sorted(config & secret_names)]
    problems += [f"not secret, belongs in the ConfigMap: {k}" for k in sorted(ours - secret_names)]
    return problems


def ingestion_over_partitions(docs: list[Doc]) -> str | None:
    ingestion, _ = component(docs, "ingestion")
    replicas, partitions = (
        ingestion["spec"]["replicas"],
        int(config_data(docs)["INTENTLOOP_KAFKA__PARTITIONS"]),
    )
    return f"{replicas} ingestion replicas > {partitions} partitions" if replicas > partitions else None


def allowed_ports(docs: list[Doc], labels: dict[str, str], direction: str) -> set[int]:
    """Ports a pod with ``labels`` may use in ``direction`` ("ingress"/"egress") under the policies."""
    ports: set[int] = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if direction.capitalize() in spec["policyTypes"] and selects(spec["podSelector"], labels):
            for rule in spec.get(direction, []):
                ports |= {int(p["port"]) for p in rule.get("ports", [])}
    return ports


# --------------------------------------------------------------------------- schemas


def test_every_rendered_document_is_valid_against_the_kubernetes_schemas(docs):
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert errors == []
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "CronJob", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ConfigMap", "Secret", "Service", "NetworkPolicy", "Namespace", "ServiceAccount"} <= kinds


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda c: c.update(readinessprobe=c.pop("readinessProbe")), "a misspelt field"),
        (lambda c: c["resources"]["limits"].update(cpu=["2"]), "a list where a quantity goes"),
        (lambda c: c.update(ports=[{"name": "http", "containerPort": "8080"}]), "a port as a string"),
    ],
)
def test_validation_rejects_a_broken_document(rendered, edit, what):
    doc = copy.deepcopy(one(rendered["cpu"], "Deployment", "intentloop-inference"))
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # the original passes
    edit(doc["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# --------------------------------------------------------------------------- configuration


def test_every_setting_is_wired_through_the_configmap_or_the_secret(docs):
    config, secret = set(config_data(docs)), secret_keys(docs)
    assert unwired(config, secret) == []
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secret  # the S3 artifact store's


def test_the_wiring_check_reports_what_is_missing_or_misplaced(rendered):
    config, secret = set(config_data(rendered["cpu"])), secret_keys(rendered["cpu"])
    assert unwired(config - {"INTENTLOOP_DRIFT__JS_ALERT"}, secret) == ["missing: INTENTLOOP_DRIFT__JS_ALERT"]
    moved = unwired(config | {"INTENTLOOP_POSTGRES__URL"}, secret - {"INTENTLOOP_POSTGRES__URL"})
    assert moved == ["secret in the ConfigMap: INTENTLOOP_POSTGRES__URL"]
    assert unwired(config | {"INTENTLOOP_NO_SUCH"}, secret) == ["not a setting: INTENTLOOP_NO_SUCH"]


def test_the_configmap_values_are_valid_settings(docs, monkeypatch, tmp_path):
    """Every value parses and passes its bounds, as a pod would read it (placeholders for secrets)."""
    monkeypatch.chdir(tmp_path)  # no .env file in the way
    for key in [k for k in os.environ if k.startswith("INTENTLOOP_")]:
        monkeypatch.delenv(key)
    for key, value in config_data(docs).items():
        monkeypatch.setenv(key, value)
    for key in secret_keys(docs):
        monkeypatch.setenv(key, "placeholder")
    settings = Settings()
    assert settings.serve.host == "0.0.0.0"  # reachable by the Service and the kubelet's probes
    assert settings.kafka.bootstrap and settings.artifacts.url  # real servers, artifacts shared
    assert settings.postgres.url is not None and settings.redis.url is not None


def test_every_container_reads_the_configmap_and_the_secret_that_are_rendered(docs):
    names = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap") + of_kind(docs, "Secret")}
    for doc, c in containers(docs):
        refs = [next(iter(ref.values()))["name"] for ref in c["envFrom"]]
        assert len(refs) == 2 and set(refs) <= names, f"{doc['metadata']['name']}: {refs}"


def test_every_container_runs_a_real_intentloop_command(docs):
    """Arguments to the image's ENTRYPOINT (`intentloop`): a misspelt command or option fails here."""
    for doc, c in containers(docs):
        assert "command" not in c, "keep the image's entrypoint; give the subcommand as args"
        result = CliRunner().invoke(cli, [*c["args"], "--help"])
        assert result.exit_code == 0, (
            f"{doc['metadata']['name']}: intentloop {' '.join(c['args'])}\n{result.output}"
        )


# --------------------------------------------------------------------------- every pod


def test_every_container_has_requests_and_limits(docs):
    for doc, c in containers(docs):
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        for resource in ("cpu", "memory"):
            assert quantity(requests[resource]) <= quantity(limits[resource]), (
                doc["metadata"]["name"],
                resource,
            )


def test_every_pod_runs_unprivileged(docs):
    """The namespace enforces Pod Security "restricted": a pod breaking it would never start."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    image_user = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)[-1]
    namespace = one(docs, "Namespace", "intentloop")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc, spec in workloads(docs):
        name = doc["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and str(pod["runAsUser"]) == image_user, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], name
            assert ctx["readOnlyRootFilesystem"] is True, name
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert config_data(docs)["INTENTLOOP_STATE_DIR"] in mounts and "/tmp" in mounts, name


# --------------------------------------------------------------------------- inference


def test_inference_is_gated_on_readyz_and_drains_before_it_is_killed(docs):
    deployment, spec = component(docs, "inference")
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(config_data(docs)["INTENTLOOP_SERVE__PORT"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop > 0
    drain = float(config_data(docs)["INTENTLOOP_SERVE__DRAIN_S"])
    budget = pre_stop + drain + GRACEFUL_TIMEOUT_S + FINAL_FLUSH_TIMEOUT_S
    assert spec["terminationGracePeriodSeconds"] > budget
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    threads = int(config_data(docs)["INTENTLOOP_SERVE__TORCH_THREADS"])
    assert 0 < threads <= quantity(c["resources"]["limits"]["cpu"])


def test_the_autoscaler_and_the_disruption_budget_cover_the_inference_workers(docs):
    deployment, _ = component(docs, "inference")
    labels = pod_labels(deployment)
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert (
        metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] < 100
    )
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and selects(pdb["spec"]["selector"], labels)
    # a budget the autoscaler's floor can always honour, yet one that never blocks a drain for good
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_services_select_the_pods_they_name(docs):
    for service in of_kind(docs, "Service"):
        (port,) = service["spec"]["ports"]
        backing = [
            (d, s)
            for d, s in workloads(docs)
            if d["kind"] == "Deployment"
            and selects({"matchLabels": service["spec"]["selector"]}, pod_labels(d))
        ]
        assert len(backing) == 1, service["metadata"]["name"]
        named = {p["name"] for c in backing[0][1]["containers"] for p in c.get("ports", [])}
        assert port["targetPort"] in named


# --------------------------------------------------------------------------- jobs


def test_the_refresh_and_drift_cronjobs_never_overlap_and_the_refresh_follows_the_schedule(docs):
    cronjobs = {pod_labels(d)["app.kubernetes.io/component"]: d for d in of_kind(docs, "CronJob")}
    assert set(cronjobs) == {"trainer", "drift"}
    assert all(c["spec"]["concurrencyPolicy"] == "Forbid" for c in cronjobs.values())
    refresh = cronjobs["trainer"]["spec"]
    assert refresh["schedule"] == config_data(docs)["INTENTLOOP_TRAIN__SCHEDULE"]
    assert refresh["timeZone"] == "Etc/UTC"  # the settings' schedule is UTC
    trainer = pod_spec(cronjobs["trainer"])
    assert trainer is not None
    (train,) = trainer["containers"]
    assert train["args"][:2] == ["train", "--promote"]
    # the intent-type head trains on the latest aggregation: it runs first, in the same pod
    assert [c["args"][:2] for c in trainer["initContainers"]] == [["labels", "aggregate"]]
    (drift,) = pod_spec(cronjobs["drift"])["containers"]  # type: ignore[index]
    assert drift["args"][:2] == ["drift", "check"]
    _, migrate = component(docs, "migrations")
    assert migrate["containers"][0]["args"] == ["db", "upgrade"]


def test_gpu_resources_only_in_the_gpu_overlay_and_only_for_the_refresh(rendered):
    for overlay, docs in rendered.items():
        with_gpu = [
            (d, c)
            for d, c in containers(docs)
            if GPU in c["resources"]["limits"] or GPU in c["resources"]["requests"]
        ]
        if overlay != "gpu":
            assert with_gpu == [], overlay
            assert all("nodeSelector" not in s and "tolerations" not in s for _, s in workloads(docs))
            continue
        ((doc, c),) = with_gpu
        assert pod_labels(doc)["app.kubernetes.io/component"] == "trainer"
        assert c["resources"]["limits"][GPU] == c["resources"]["requests"][GPU] == "1"
        spec = pod_spec(doc)
        assert spec is not None and spec["nodeSelector"] and spec["tolerations"]
        # the CUDA build of the Dockerfile for the refresh pod (one pull on the GPU node), the CPU
        # build everywhere else
        assert {i["image"] for i in spec["initContainers"]} == {c["image"]} and c["image"].endswith("-cu128")
        others = {o["image"] for d, o in containers(docs) if d is not doc}
        assert len(others) == 1 and not others.pop().endswith("-cu128")


def test_ingestion_never_outnumbers_the_partitions(docs):
    assert ingestion_over_partitions(docs) is None


def test_the_partition_check_fails_when_replicas_exceed_partitions(rendered):
    docs = copy.deepcopy(rendered["cpu"])
    config_data(docs)["INTENTLOOP_KAFKA__PARTITIONS"] = "1"
    assert ingestion_over_partitions(docs) == "2 ingestion replicas > 1 partitions"


# --------------------------------------------------------------------------- network


def test_network_policies_deny_by_default_and_allow_exactly_what_each_component_needs(docs):
    deny = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    )
    for name, needs in NEEDS.items():
        doc, _ = component(docs, name)
        labels = pod_labels(doc)
        assert allowed_ports(docs, labels, "egress") == needs | {DNS}, name
        served = {SERVED[name]} if name in SERVED else set()
        assert allowed_ports(docs, labels, "ingress") == served, name


# --------------------------------------------------------------------------- a real deployment


def test_a_deployment_overlay_replaces_the_placeholder_secret(rendered, tmp_path):
    """The documented way to supply secrets (docs/deploy.md): an overlay of one's own with a
    secretGenerator from an uncommitted env file; every workload then reads the real Secret."""
    (tmp_path / "secrets.env").write_text(
        "INTENTLOOP_POSTGRES__URL=postgresql+psycopg://intentloop:s3cret@db.internal:5432/intentloop\n"
        "INTENTLOOP_REDIS__URL=redis://:s3cret@redis.internal:6379/0\n"
        "INTENTLOOP_SERVE__ADMIN_TOKEN=t0ken\nINTENTLOOP_REVIEW__SECRET=k3y\n",
        encoding="utf-8",
    )
    base = os.path.relpath(K8S / "overlays" / "gpu", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [base],
                "secretGenerator": [
                    {"name": "intentloop-secrets", "behavior": "replace", "envs": ["secrets.env"]}
                ],
            }
        ),
        encoding="utf-8",
    )
    docs = kustomize(tmp_path)
    (secret,) = of_kind(docs, "Secret")
    assert set(secret["data"]) == {
        "INTENTLOOP_POSTGRES__URL",
        "INTENTLOOP_REDIS__URL",
        "INTENTLOOP_SERVE__ADMIN_TOKEN",
        "INTENTLOOP_REVIEW__SECRET",
    }
    placeholder = next(d for d in of_kind(rendered["gpu"], "Secret"))["metadata"]["name"]
    assert secret["metadata"]["name"] != placeholder  # a new hash: the workloads roll
    for doc, c in containers(docs):
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in c["envFrom"], doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_placeholder_secret_fails_closed(rendered, overlay):
    """Left in place, the committed placeholders must open nothing: no bearer token or signing key
    anyone can read in the repository (``null`` turns /admin off and gives each dashboard a random
    key), and the URLs point at a host that does not exist."""
    (secret,) = [
        d
        for d in of_kind(rendered[overlay], "Secret")
        if d["metadata"]["name"].startswith("intentloop-secrets")
    ]
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values["INTENTLOOP_SERVE__ADMIN_TOKEN"] == "null"
    assert values["INTENTLOOP_REVIEW__SECRET"] == "null"
    assert all("REPLACE-ME" in values[k] for k in ("INTENTLOOP_POSTGRES__URL", "INTENTLOOP_REDIS__URL"))
