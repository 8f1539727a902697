"""Content-addressed adapter artifacts in any S3-compatible object store (AWS S3, MinIO, Ceph, R2...).

Layout: ``s3://<bucket>/<prefix>/<version>/<file>``, the same files and manifest as the local store
(``store.artifacts``), so a version id means the same bytes wherever it lives.

Atomic without transactions: a single S3 PUT is all-or-nothing, so publishing uploads the adapter
files first and the manifest last. The manifest is the commit marker: a version whose manifest is
not there yet (a publisher that crashed half-way) is invisible to ``list_versions`` and ``fetch``.
Every fetch downloads into a hidden temp directory of the local cache, renames it into place and
verifies every sha256 before anything is loaded: a corrupt or truncated object is refused exactly
as a corrupt local file is. Workers read from the cache after the first fetch of a version; a cache
copy that fails verification is thrown away and fetched again once.

The client is boto3 (credentials from the usual AWS chain: environment, profile, instance role);
``endpoint_url`` points it at a non-AWS store. boto3 is imported lazily, so the local store needs
none of it.
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from store.artifacts import MANIFEST, ArtifactStore
from store.exceptions import ArtifactError

log = logging.getLogger(__name__)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise ArtifactError(f"artifact URL {url!r} is not s3://bucket[/prefix]")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ArtifactError(f"artifact URL {url!r} names no bucket")
    return bucket, prefix.strip("/")


class S3ArtifactStore(ArtifactStore):
    """The local store's interface over a bucket; ``cache_root`` holds verified local copies."""

    def __init__(
        self,
        url: str,
        cache_root: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(cache_root)
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        if client is None:
            import boto3  # lazy: only deployments with an S3 store need it

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.client = client

    def _key(self, version: str, name: str = "") -> str:
        parts = [p for p in (self.prefix, version, name) if p]
        return "/".join(parts)

    def uri(self, version: str) -> str:
        return f"s3://{self.bucket}/{self._key(version)}/"

    def publish(self, src: Path) -> str:
        """Upload a freshly saved adapter directory, files first and manifest last."""
        version, manifest = self.sealed_manifest(src)
        if self._exists(self._key(version, MANIFEST)):
            return version
        try:
            for name in manifest["files"]:
                self.client.upload_file(str(src / name), self.bucket, self._key(version, name))
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            self.client.put_object(Bucket=self.bucket, Key=self._key(version, MANIFEST), Body=body)
        except Exception as exc:  # botocore's errors share no importable base without boto3
            raise ArtifactError(f"publishing {version} to {self.uri(version)} failed: {exc}") from exc
        log.info("published %s to %s", version, self.uri(version))
        return version

    def fetch(self, version: str) -> tuple[Path, dict[str, Any]]:
        """The verified local copy of ``version``, downloaded on first use."""
        if self.path(version).is_dir():
            try:
                return super().fetch(version)
            except ArtifactError as exc:
                log.warning("cached copy of %s failed verification (%s); fetching it again", version, exc)
                shutil.rmtree(self.path(version), ignore_errors=True)
        self._download(version)
        return super().fetch(version)

    def list_versions(self) -> list[str]:
        """Versions whose manifest (the commit marker) is in the bucket."""
        base = f"{self.prefix}/" if self.prefix else ""
        versions: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/"
            )
            for page in pages:
                for entry in page.get("CommonPrefixes", []):
                    version = entry["Prefix"][len(base) :].strip("/")
                    if version and self._exists(self._key(version, MANIFEST)):
                        versions.append(version)
        except Exception as exc:
            raise ArtifactError(f"listing {self.url} failed: {exc}") from exc
        return sorted(versions)

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise ArtifactError(f"checking s3://{self.bucket}/{key} failed: {exc}") from exc
        return True

    def _download(self, version: str) -> None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(version, MANIFEST))["Body"].read()
        except Exception as exc:
            if _status(exc) == 404:
                raise ArtifactError(f"artifact {version} not found at {self.uri(version)}") from exc
            raise ArtifactError(f"reading {self.uri(version)}{MANIFEST} failed: {exc}") from exc
        try:
            manifest = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"artifact {version}: {MANIFEST} is not valid JSON: {exc}") from exc
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or not files or any("/" in n or n.startswith(".") for n in files):
            raise ArtifactError(f"artifact {version}: {MANIFEST} lists no usable files")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.root))
        try:
            for name in files:
                self.client.download_file(self.bucket, self._key(version, name), str(tmp / name))
            (tmp / MANIFEST).write_bytes(body)
            tmp.rename(self.path(version))
        except OSError as exc:  # another fetch of the same version won the rename: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.path(version).is_dir():
                raise ArtifactError(f"artifact {version}: caching failed: {exc}") from exc
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if _status(exc) == 404:
                raise ArtifactError(
                    f"artifact {version}: a file is missing from {self.uri(version)}"
                ) from exc
            raise ArtifactError(f"downloading {self.uri(version)} failed: {exc}") from exc


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError (``404`` for a missing key), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in {"404", "NoSuchKey", "NotFound"}:
        return 404
    return int(status) if isinstance(status, int) else None
