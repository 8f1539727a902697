"""Shared by the serving tests: a tiny shared base, synthetic adapters and a host over them."""

import json
import shutil
from pathlib import Path

from serving.adapters import SharedBase
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.synthetic import synthetic_adapter
from store.artifacts import MANIFEST, ArtifactStore

LABELS = ["electronics", "fashion", "grocery", "home"]
TEXTS = [
    "red running shoe",
    "usb c cable 2m",
    "organic oat milk",
    "a much longer query about a blue denim jacket",
]


def make_versions(store: ArtifactStore, base_dir: Path, seeds: list[int], max_length: int = 16) -> list[str]:
    return [synthetic_adapter(store, base_dir, seed=s, labels=LABELS, max_length=max_length) for s in seeds]


def make_host(store: ArtifactStore, base: SharedBase, **kwargs) -> ModelHost:
    return ModelHost(store, base, metrics=ServingMetrics(), **kwargs)


def republish_with_manifest(store: ArtifactStore, version: str, tmp: Path, **changes) -> str:
    """A copy of ``version`` with another manifest, hashes consistent: valid artifact, bad content."""
    src = tmp / f"edit-{version}"
    shutil.copytree(store.path(version), src)
    manifest = json.loads((src / MANIFEST).read_text())
    for key in ("version", "files", "meta_sha256"):
        manifest.pop(key, None)
    manifest.update(changes)
    (src / MANIFEST).write_text(json.dumps(manifest))
    return store.publish(src)


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in exposition.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        metric, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == want:
            return float(value)
    return 0.0


class Load:
    """Steady single-query traffic to some workers from a thread; every answer is recorded."""

    def __init__(self, ports: list[int], *, sessions: int = 50) -> None:
        import threading

        self.ports = list(ports)
        self.records: list[dict] = []
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Load":
        self._thread.start()
        return self

    def _run(self) -> None:
        import time

        import httpx

        i = 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                for port in list(self.ports):
                    i += 1
                    rec = {"port": port, "t": time.monotonic(), "session": f"s{i % self._sessions}"}
                    try:
                        r = client.post(
                            f"http://127.0.0.1:{port}/v1/intent",
                            json={"queries": ["red shoes", "oat milk"], "session_id": rec["session"]},
                        )
                        rec["status"] = r.status_code
                        if r.status_code == 200:
                            body = r.json()
                            rec["version"], rec["alias"] = body["version"], body["alias"]
                            rec["mixed"] = {p["version"] for p in body["predictions"]} != {body["version"]}
                    except httpx.HTTPError as exc:
                        rec["status"] = type(exc).__name__
                    self.records.append(rec)
                time.sleep(0.01)

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(15)
        return self.records

    def failures(self) -> list[dict]:
        return [r for r in self.records if r["status"] != 200]


# --- ONNX backend (issue 18) -------------------------------------------------------------------
_QUERY_WORDS = ("best", "cheap", "new", "gift", "sale", "set", "pro", "mini", "kit", "blue", "red", "large")


def labelled_queries(labels: list[str], seed: int, per_label: int) -> list[tuple[str, str]]:
    """(text, label) rows naming their label between two random words: a head fitted to them on the
    tiny random encoder answers decisively, so int8 has a real accuracy to keep (or lose)."""
    import random

    rng = random.Random(seed)
    return [
        (f"{rng.choice(_QUERY_WORDS)} {label} {rng.choice(_QUERY_WORDS)}", label)
        for _ in range(per_label)
        for label in labels
    ]


def make_exported_versions(
    store: ArtifactStore, base_dir: Path, seeds: list[int], max_length: int = 16
) -> list[str]:
    """Versions with fitted heads and both graphs published (fp32, and int8 within the F1 budget)."""
    from trainer.settings import ExportSettings

    return [
        synthetic_adapter(
            store,
            base_dir,
            seed=s,
            labels=LABELS,
            max_length=max_length,
            export=ExportSettings(),
            fit=labelled_queries(LABELS, s, 10),
            held_out=labelled_queries(LABELS, s + 1000, 5),
        )
        for s in seeds
    ]


def republish_with_files(
    store: ArtifactStore, version: str, tmp: Path, files: dict[str, bytes | None], **changes: object
) -> str:
    """A copy of ``version`` with some files' bytes replaced (``None``: removed) and the hashes
    resealed: an artifact the store accepts (``fetch`` verifies it) whose content is damaged, such as a
    garbage graph or another version's graph."""
    import tempfile

    src = Path(tempfile.mkdtemp(prefix=f"files-{version}-", dir=tmp))
    shutil.copytree(store.path(version), src, dirs_exist_ok=True)
    for name, data in files.items():
        if data is None:
            (src / name).unlink()
        else:
            (src / name).write_bytes(data)
    manifest = json.loads((src / MANIFEST).read_text())
    for key in ("version", "files", "meta_sha256"):
        manifest.pop(key, None)
    manifest.update(changes)
    (src / MANIFEST).write_text(json.dumps(manifest))
    return store.publish(src)
