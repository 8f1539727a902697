"""deploy/compose.yaml without a container runtime: the Compose specification's JSON Schema, and the
properties the schema cannot see (the issue's services, secrets, real settings and commands, mounts).

The schema is the one check-jsonschema vendors (``vendor.compose-spec``), checked twice: on the file
as written (``${...}`` strings) and on the file as Compose would run it, interpolated from the env
file template (deploy/env.example), where numbers and paths are what the user gets.
"""

import copy
import itertools
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from intentloop import config_reference
from intentloop.cli.app import cli
from intentloop.settings import Settings
from serving.settings import ServeSettings
from streams.drift.settings import DriftSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"
IMAGE = "intentloop"  # services built from ../Dockerfile share this image name (before the tag)
SECRET_WORDS = ("PASSWORD", "SECRET", "KEY", "TOKEN", "AUTH")


# --------------------------------------------------------------------------- helpers


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (Compose's format: no quotes used in ours, # comments)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            env[key.strip()] = value
    return env


_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation (``$$``, ``${X}``, ``${X:-default}``, ``${X:?error}``) of every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m["name"], m["op"] or "", m["arg"]
        value = env.get(name)
        missing = value is None or (op.startswith(":") and value == "")  # ":" also treats empty as unset
        if missing and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        if missing and op.endswith("-"):
            return arg
        return value or ""

    return _VAR.sub(one, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    """The template as a user fills it in: every secret left empty there gets a (hex) value."""
    return {k: v or "0123abcd" * 3 for k, v in dotenv(ENV_EXAMPLE).items()}


@pytest.fixture(scope="module")
def compose(raw, example_env) -> dict[str, Any]:
    """The file as Compose runs it with deploy/.env copied from the template."""
    return interpolate(raw, example_env)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = get_builtin_schema("vendor.compose-spec")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc["services"]


def ours(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services running the intentloop image."""
    return {n: s for n, s in services(doc).items() if s.get("image", "").split(":")[0] == IMAGE}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def setting_names() -> set[str]:
    return {row.env for section in config_reference.sections() for row in section.rows}


# --------------------------------------------------------------------------- the schema


def test_valid_against_the_compose_specification(raw, compose, validator):
    for doc in (raw, compose):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == []


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("services", "serve", "replicaz"), 2, "replicaz"),  # an unknown key
        (("services", "ingest", "depends_on", "kafka", "condition"), "service_ready", "service_ready"),
        (("services", "proxy", "ports"), "8080:8080", "is not of type 'array'"),
    ],
)
def test_the_validator_rejects_a_broken_copy(compose, validator, path, value, complaint):
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    messages = [e.message for e in validator.iter_errors(broken)]
    assert messages, f"{'/'.join(path)}={value!r} was accepted"
    assert any(complaint in m for m in messages), messages


# --------------------------------------------------------------------------- the issue's services


def test_every_service_the_issue_names_exists(compose):
    s = services(compose)
    kafka = environment(s["kafka"])
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft, no ZooKeeper
    assert not any("zookeeper" in k.lower() or "zookeeper" in v for k, v in kafka.items())
    assert s["postgres"]["image"].startswith("postgres:")
    assert s["redis"]["image"].startswith("redis:")
    assert s["minio"]["image"].startswith("minio/minio:")
    assert s["migrate"]["command"] == ["db", "upgrade"]
    assert s["create-bucket"]["entrypoint"][-1].endswith("create_bucket.py")
    assert s["ingest"]["command"] == ["worker", "ingest"] and s["ingest"]["deploy"]["replicas"] == 2
    assert s["serve"]["command"] == ["worker", "serve"] and s["serve"]["deploy"]["replicas"] == 2
    assert s["proxy"]["image"].startswith("nginx:")
    assert s["drift"]["command"][:3] == ["drift", "check", "--every"]
    assert s["dashboard"]["command"][0] == "dashboard"
    assert s["prometheus"]["image"].startswith("prom/prometheus:")
    assert s["grafana"]["image"].startswith("grafana/grafana:")


def test_one_shot_jobs_gate_the_workers(compose):
    s = services(compose)
    for job in ("migrate", "create-bucket"):
        assert s[job]["restart"] == "no"
    for name in ("ingest", "serve", "drift", "dashboard", "train", "train-gpu"):
        assert s[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("serve", "train", "train-gpu"):  # they publish or fetch adapters
        assert s[name]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"


def test_healthy_conditions_wait_on_a_real_healthcheck(compose):
    """service_healthy on a service without a healthcheck would never start its dependants: each
    target defines one, or runs our image, whose HEALTHCHECK test_dockerfile.py checks."""
    s = services(compose)
    waited = {
        target
        for svc in s.values()
        for target, when in svc.get("depends_on", {}).items()
        if when["condition"] == "service_healthy"
    }
    assert waited >= {"kafka", "postgres", "redis", "minio", "serve", "prometheus"}
    for name in waited:
        check = s[name].get("healthcheck", {})
        assert not check.get("disable", False), name
        assert check.get("test") or name in ours(compose), f"{name} has no healthcheck"


def test_trainer_nightly_on_cpu_or_one_gpu_by_profile(compose):
    s = services(compose)
    trainers = {n: svc for n, svc in s.items() if svc.get("command", [])[:2] == ["train", "schedule"]}
    assert set(trainers) == {"train", "train-gpu"}
    assert {p for svc in trainers.values() for p in svc["profiles"]} == {"cpu", "gpu"}
    assert all(len(svc["profiles"]) == 1 for svc in trainers.values())  # never both at once
    devices = s["train-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert s["train-gpu"]["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert "devices" not in str(s["train"].get("deploy", {}))
    # cron of the schedule: the template's value is a valid, nightly expression
    from croniter import croniter

    cron = Settings.model_validate({"train": {"schedule": dotenv(ENV_EXAMPLE)["INTENTLOOP_TRAIN__SCHEDULE"]}})
    assert croniter.is_valid(cron.train.schedule)


def test_ingestion_replicas_at_most_the_partitions(compose):
    for name, svc in ours(compose).items():
        if svc.get("command") == ["worker", "ingest"]:
            partitions = int(environment(svc)["INTENTLOOP_KAFKA__PARTITIONS"])
            assert svc["deploy"]["replicas"] <= partitions, name


# --------------------------------------------------------------------------- secrets


def test_no_secret_is_written_in_the_yaml(raw):
    """Every password, key or token is a ${...} reference to deploy/.env (or comes from env_file)."""
    found = []
    docs = {**services(raw), **{k: v for k, v in raw.items() if k.startswith("x-")}}
    for name, svc in docs.items():
        for key, value in environment(svc).items():
            if any(w in key.upper() for w in SECRET_WORDS) and not value.startswith("${"):
                found.append(f"{name}.{key}")
        for text in strings(svc):
            for password in re.findall(r"://[^/@\s:]*:([^@/\s]+)@", text):  # user:password@ in a URL
                if not password.startswith("${"):
                    found.append(f"{name}: {text}")
        command = svc.get("command", [])
        for flag, value in itertools.pairwise(command):
            if flag in ("--requirepass", "--password") and not value.startswith("${"):
                found.append(f"{name}: {flag}")
    assert found == []


def test_the_secret_check_catches_a_literal(raw):
    leaked = copy.deepcopy(raw)
    leaked["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    with pytest.raises(AssertionError):
        test_no_secret_is_written_in_the_yaml(leaked)


def test_intentloop_services_read_the_env_file(compose):
    for name, svc in ours(compose).items():
        assert svc["env_file"] == [{"path": ".env", "required": True}], name


def test_compose_refuses_to_start_with_the_secrets_left_empty(raw):
    template = dotenv(ENV_EXAMPLE)
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required <= set(template), "every required variable is in the template"
    empty = {k for k, v in template.items() if not v}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"} <= empty
    assert empty <= required  # an empty value Compose would not refuse would start a service without it
    with pytest.raises(KeyError):
        interpolate(raw, template)


# --------------------------------------------------------------------------- settings and commands


def test_every_intentloop_variable_is_a_real_setting(raw, example_env):
    real = setting_names()
    named = set(re.findall(r"\bINTENTLOOP_[A-Z][A-Z0-9_]*", COMPOSE.read_text()))
    named |= set(re.findall(r"\bINTENTLOOP_[A-Z][A-Z0-9_]*", ENV_EXAMPLE.read_text()))
    assert named - real == set()
    assert {k for k in example_env if k.startswith("INTENTLOOP_")} <= real


def test_the_settings_each_service_gets_are_valid(compose, example_env, monkeypatch):
    """What a container's environment would hold (env_file, then `environment` over it) parses."""
    for name, svc in ours(compose).items():
        env = {**example_env, **environment(svc)}
        for key in [k for k in os.environ if k.startswith("INTENTLOOP_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("INTENTLOOP_"):
                monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.kafka.bootstrap == "kafka:9092", name
        assert settings.artifacts.url and settings.artifacts.url.startswith("s3://"), name
        assert settings.postgres.url is not None
        assert "@postgres:5432/" in settings.postgres.url.get_secret_value(), name


def test_every_command_is_a_real_cli_command(compose):
    runner = CliRunner()
    for name, svc in ours(compose).items():
        if "entrypoint" in svc:
            continue
        result = runner.invoke(cli, [*svc["command"], "--help"])
        assert result.exit_code == 0, f"{name}: intentloop {' '.join(svc['command'])}\n{result.output}"
        words = [w for w in svc["command"] if not w.startswith("-")]
        assert f"Usage: cli {words[0]}" in result.output or f"Usage: intentloop {words[0]}" in result.output


def test_a_wrong_command_fails_the_cli_check():
    result = CliRunner().invoke(cli, ["drift", "check", "--evry", "300", "--help"])
    assert result.exit_code != 0


def test_scripts_run_in_the_image_exist(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name, svc in ours(compose).items():
        for word in svc.get("entrypoint", []):
            if word.startswith("/opt/intentloop/libexec/"):
                script = Path(word).name
                assert (DEPLOY / "docker" / script).is_file(), name
                assert f"deploy/docker/{script}" in dockerfile, f"{script} is not copied into the image"


# --------------------------------------------------------------------------- files and wiring


def test_every_mounted_host_path_exists(compose):
    missing = []
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (DEPLOY / source).exists():
                    missing.append(f"{name}: {source}")
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
    assert missing == []


def test_proxy_and_prometheus_reach_the_workers(compose):
    s = services(compose)
    port = ServeSettings().port
    nginx = (DEPLOY / "proxy" / "nginx.conf").read_text()
    assert re.search(rf"^\s*server serve:{port} resolve\b", nginx, re.M)
    assert "proxy_next_upstream error http_502 http_503" in nginx
    prom = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["intentloop-serve"]["dns_sd_configs"][0] == {
        "names": ["serve"], "type": "A", "port": port, "refresh_interval": "30s"
    }
    dashboard = jobs["intentloop-dashboard"]["static_configs"][0]["targets"]
    drift_port = DriftSettings().dashboard_port
    assert dashboard == [f"dashboard:{drift_port}"]
    assert s["dashboard"]["command"] == ["dashboard", "--host", "0.0.0.0"]
    grafana = environment(s["grafana"])
    assert grafana["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_an_inference_worker_is_never_killed_mid_drain(compose):
    """`docker compose stop` waits stop_grace_period after SIGTERM before SIGKILL: it must cover
    the requests in flight and the last flush of the served-prediction counts."""
    from serving.watcher import FINAL_FLUSH_TIMEOUT_S
    from serving.worker import GRACEFUL_TIMEOUT_S

    grace = services(compose)["serve"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", grace)
    assert match, grace
    assert int(match.group(1)) > GRACEFUL_TIMEOUT_S + FINAL_FLUSH_TIMEOUT_S
