"""Content-addressed adapter artifacts on a local directory.

A version id is derived from the sha256 of every file *and* of the manifest's metadata (label map,
base model, LoRA shape), so the same content always gets the same id and a cache keyed by version
can never serve stale content: a label map edited after publishing no longer matches its version.
Publishing writes to a hidden temp directory and renames it into place: readers never see a
half-written adapter.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from store.exceptions import ArtifactError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# Manifest fields that decide what the adapter answers (hashed into its version). Provenance such as
# metrics, created_at or the training run is not: the same weights trained twice stay one version.
# ``fusion``: a fused version's members, method, temperature and label order (its members' files
# are top-level files, hashed like the adapter's). Not ``onnx``: the ONNX graphs are files (hashed),
# the section records how the export checked them on the exporting machine (differences, probe
# answers, runtime version), which would give the same weights another id on another machine.
CONTENT_FIELDS = ("format", "labels", "base_model", "peft", "max_length", "input_format", "fusion")
# Content fields added after artifacts were first published: hashed only when present, so an older
# manifest (which lacks them and means their default) keeps the meta hash, hence the id, it had.
# A plain (unfused) version has no ``fusion`` and keeps the id it had before fusion existed.
_ADDED_CONTENT_FIELDS = frozenset({"input_format", "fusion"})


def content_version(files: dict[str, str], meta_sha256: str | None = None) -> str:
    entries = dict(files)
    if meta_sha256 is not None:
        entries[MANIFEST] = meta_sha256  # not a file name in ``files``: publish excludes the manifest
    joined = "\n".join(f"{name}:{sha}" for name, sha in sorted(entries.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def manifest_meta_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's content fields (``CONTENT_FIELDS``) in canonical JSON."""
    meta = {k: manifest.get(k) for k in CONTENT_FIELDS if k in manifest or k not in _ADDED_CONTENT_FIELDS}
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ArtifactStore:
    """Adapter directories under ``root/<version>/``, each with a manifest listing file hashes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, src: Path) -> str:
        """Copy a freshly saved adapter directory in, atomically; returns its content version."""
        version, manifest = self.sealed_manifest(src)
        final = self.root / version
        if final.exists():
            return version
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=self.root))
        try:
            for name in manifest["files"]:
                shutil.copy2(src / name, tmp / name)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            for p in tmp.iterdir():
                with p.open("rb") as fh:
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def path(self, version: str) -> Path:
        """Where ``version``'s files are (or will be) on this machine."""
        return self.root / version

    def uri(self, version: str) -> str:
        """Where ``version`` is published, as recorded in ``adapter_versions.uri``."""
        return str(self.path(version))

    def fetch(self, version: str) -> tuple[Path, dict[str, Any]]:
        """The verified directory and manifest of ``version``; refuses anything that does not hash right."""
        path = self.root / version
        if not path.is_dir():
            raise ArtifactError(f"artifact {version} not found under {self.root}")
        manifest = self._read_manifest(path)
        files: dict[str, str] = manifest.get("files") or {}
        if manifest.get("version") != version or not files:
            raise ArtifactError(f"artifact {version}: manifest names version {manifest.get('version')!r}")
        for name, expected in files.items():
            f = path / name
            if not f.is_file():
                raise ArtifactError(f"artifact {version}: file {name} is missing")
            if sha256_file(f) != expected:
                raise ArtifactError(f"artifact {version}: sha256 mismatch for {name} (corrupt or truncated)")
        # Artifacts published before the manifest was hashed carry no meta_sha256: their id covers
        # the files only. Dropping the field from a newer manifest changes the id, so it is refused.
        meta_sha = manifest.get("meta_sha256")
        if meta_sha is not None and manifest_meta_sha256(manifest) != meta_sha:
            raise ArtifactError(
                f"artifact {version}: manifest content (labels, base model) was changed after publishing"
            )
        if content_version(files, meta_sha) != version:
            raise ArtifactError(f"artifact {version}: file and manifest hashes do not give its version id")
        return path, manifest

    def list_versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    @classmethod
    def sealed_manifest(cls, src: Path) -> tuple[str, dict[str, Any]]:
        """The content version of the adapter saved in ``src`` and its manifest as published: with
        the version, every file's sha256 and the hash of the content fields."""
        manifest = cls._read_manifest(src)
        files = {p.name: sha256_file(p) for p in sorted(src.iterdir()) if p.is_file() and p.name != MANIFEST}
        if not files:
            raise ArtifactError(f"{src} holds no adapter files")
        meta_sha = manifest_meta_sha256(manifest)
        version = content_version(files, meta_sha)
        manifest.update({"version": version, "files": files, "meta_sha256": meta_sha})
        return version, manifest

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any]:
        try:
            data = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError as exc:
            raise ArtifactError(f"{path} has no {MANIFEST}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path / MANIFEST} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{path / MANIFEST} is not a JSON object")
        return data
