"""scikit-learn objects as files: ``skops.io`` (no pickle), an explicit type allow-list, stable bytes.

Why not skops' defaults alone:

- **Allow-list.** ``skops.io.load`` trusts every scikit-learn and numpy type by default, so any
  estimator at all would load. A member file holds exactly the types its own code writes; any other
  type (a ``FunctionTransformer`` naming some function, an estimator that is not ours) means the file
  did not come from this code, and it is refused before anything is constructed.
- **Stable bytes.** skops names array entries and object ids after memory addresses and stamps
  the zip entries with the current time, so the same model saves to different bytes each time and a
  manifest's sha256 could never be reproduced. :func:`dumps` renumbers the ids in the order the
  schema lists them and writes the zip with fixed entry times, in name order.
"""

import io
import json
import zipfile
from collections.abc import Iterable
from typing import Any

import skops.io as sio

from trainer.members.exceptions import CorruptMemberError, UntrustedMemberError

_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def dumps(obj: Any) -> bytes:
    """``obj`` as skops bytes that depend only on ``obj``'s content."""
    with zipfile.ZipFile(io.BytesIO(sio.dumps(obj))) as raw:
        schema = json.loads(raw.read(_SCHEMA))
        renamed: dict[int, int] = {}
        _renumber(schema, renamed)
        entries = {_SCHEMA: json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()}
        for name in raw.namelist():
            if name != _SCHEMA:
                stem, dot, ext = name.partition(".")
                entries[f"{renamed[int(stem)]}{dot}{ext}"] = raw.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name])
    return out.getvalue()


def _renumber(node: Any, renamed: dict[int, int]) -> None:
    """Replace every object id (``__id__``, and array entries' ``file`` names) with its rank of
    first appearance, in place; the same id keeps one number (skops shares objects by id)."""
    if isinstance(node, dict):
        for key in ("__id__", "file"):
            if key in node:
                old = node[key]
                stem, dot, ext = str(old).partition(".")
                new = renamed.setdefault(int(stem), len(renamed))
                node[key] = new if key == "__id__" else f"{new}{dot}{ext}"
        for value in node.values():
            _renumber(value, renamed)
    elif isinstance(node, list):
        for value in node:
            _renumber(value, renamed)


def types_in(data: bytes) -> set[str]:
    """Every ``module.Class`` the skops file ``data`` would construct."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            schema = json.loads(z.read(_SCHEMA))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CorruptMemberError(f"not a skops file: {exc}") from exc
    found: set[str] = set()
    _collect(schema, found)
    return found


def _collect(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            found.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            _collect(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, found)


def loads(data: bytes, allowed: Iterable[str]) -> Any:
    """The object in ``data``, refused (:class:`UntrustedMemberError`) when it names any type
    outside ``allowed``."""
    allow = sorted(set(allowed))
    extra = sorted(types_in(data) - set(allow))
    if extra:
        raise UntrustedMemberError(f"refusing a model file with types outside its allow-list: {extra}")
    try:
        return sio.loads(data, trusted=allow)
    except Exception as exc:  # skops raises bare exceptions of many kinds for a damaged file
        raise CorruptMemberError(f"cannot load the skops file: {exc}") from exc
