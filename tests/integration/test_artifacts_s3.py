"""The S3-compatible artifact store against a real S3-protocol server over HTTP (moto's standalone
server, started on a free port), through boto3 exactly as a deployment talks to MinIO or AWS."""

import json
import logging
import shutil

import pytest
from serving_helpers import TEXTS, make_host, make_versions

from intentloop.runtime import open_artifacts
from serving.adapters import SharedBase
from serving.exceptions import AdapterRefusedError, RefusalKind
from serving.host import Request
from store.artifacts import MANIFEST, ArtifactStore
from store.artifacts_s3 import S3ArtifactStore, parse_s3_url
from store.exceptions import ArtifactError
from store.settings import ArtifactSettings

pytestmark = pytest.mark.integration

BUCKET = "intentloop-artifacts"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """Credentials the standard AWS way (environment), and a fresh bucket per test."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "intentloop")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "intentloop-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _store(s3_endpoint, tmp_path, name="cache") -> S3ArtifactStore:
    settings = ArtifactSettings(url=f"s3://{BUCKET}/adapters", endpoint_url=s3_endpoint)
    store = open_artifacts(settings, tmp_path / name)
    assert isinstance(store, S3ArtifactStore)
    return store


def test_same_content_same_version_and_a_second_machine_fetches_it(
    s3_env, s3_endpoint, tmp_path, tiny_encoder_dir
):
    local = ArtifactStore(tmp_path / "local")
    [version] = make_versions(local, tiny_encoder_dir, [1])
    s3 = _store(s3_endpoint, tmp_path, "writer")
    assert s3.publish(local.path(version)) == version  # the id is the content, wherever it lives
    assert s3.publish(local.path(version)) == version  # publishing again is a no-op
    assert s3.list_versions() == [version]
    assert s3.uri(version) == f"s3://{BUCKET}/adapters/{version}/"

    reader = _store(s3_endpoint, tmp_path, "reader")  # another worker: empty cache
    path, manifest = reader.fetch(version)
    assert path == tmp_path / "reader" / version and manifest["version"] == version
    for name in manifest["files"]:
        assert (path / name).read_bytes() == (local.path(version) / name).read_bytes()
    assert not [p for p in (tmp_path / "reader").iterdir() if p.name.startswith(".")]  # no temp left


def test_a_half_published_version_is_invisible(s3_env, s3_endpoint, tmp_path, tiny_encoder_dir):
    local = ArtifactStore(tmp_path / "local")
    [version] = make_versions(local, tiny_encoder_dir, [2])
    for f in local.path(version).iterdir():  # a publisher that died before its manifest (commit marker)
        if f.name != MANIFEST:
            s3_env.upload_file(str(f), BUCKET, f"adapters/{version}/{f.name}")
    s3 = _store(s3_endpoint, tmp_path)
    assert s3.list_versions() == []
    with pytest.raises(ArtifactError, match="not found"):
        s3.fetch(version)


def test_a_corrupt_object_is_refused_and_the_old_version_keeps_serving(
    s3_env, s3_endpoint, tmp_path, tiny_encoder_dir, caplog
):
    s3 = _store(s3_endpoint, tmp_path)
    good, victim = make_versions(s3, tiny_encoder_dir, [3, 4])
    manifest = json.loads(
        s3_env.get_object(Bucket=BUCKET, Key=f"adapters/{victim}/{MANIFEST}")["Body"].read()
    )
    name = sorted(manifest["files"])[0]
    key = f"adapters/{victim}/{name}"
    data = s3_env.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3_env.put_object(Bucket=BUCKET, Key=key, Body=data[: len(data) // 2])  # truncated in the bucket

    worker = _store(s3_endpoint, tmp_path, "worker-cache")
    host = make_host(worker, SharedBase(tiny_encoder_dir))
    host.assign("champion", good)
    with caplog.at_level(logging.ERROR, logger="serving.host"), pytest.raises(AdapterRefusedError) as err:
        host.assign("champion", victim)
    assert err.value.kind == RefusalKind.INTEGRITY and "sha256 mismatch" in err.value.reason
    assert host.version() == good and host.predict(Request(TEXTS)).version == good


def test_a_damaged_cache_copy_is_fetched_again(s3_env, s3_endpoint, tmp_path, tiny_encoder_dir):
    s3 = _store(s3_endpoint, tmp_path)
    [version] = make_versions(s3, tiny_encoder_dir, [5])
    path, manifest = s3.fetch(version)
    victim = path / sorted(manifest["files"])[0]
    victim.write_bytes(b"garbage")
    path2, _ = s3.fetch(version)
    assert path2 == path and victim.read_bytes() != b"garbage"
    shutil.rmtree(path)
    assert s3.fetch(version)[0].is_dir()


def test_bad_urls_and_an_unreachable_store_fail_clearly(tmp_path):
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(ArtifactError, match="names no bucket"):
        parse_s3_url("s3:///x")
    with pytest.raises(ValueError):
        ArtifactSettings(url="/not/s3")
    down = S3ArtifactStore(
        "s3://b/p",
        tmp_path,
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        client=_client_to_nowhere(),
    )
    with pytest.raises(ArtifactError, match="failed"):
        down.list_versions()


def _client_to_nowhere():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
