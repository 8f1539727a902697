"""Print the third-party requirements of ``pyproject.toml`` for a set of extras, one per line.

Why: the Dockerfile installs the dependencies in a layer of their own, before the project's source
is copied, so that editing a module rebuilds one small layer instead of re-downloading a gigabyte of
transformers, shap and scipy. pip has no "dependencies only" mode, and the extras refer to each
other (``serve = ["intentloop[ml,explain]", ...]``), so they are resolved here: the project's own
name is followed into the extras it names, never installed. Standard library only (``tomllib``).

    python requirements.py pyproject.toml serve,s3 > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

_SELF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\[(?P<extras>[^\]]+)\]\s*$")


def requirements(pyproject: dict[str, Any], extras: list[str]) -> list[str]:
    """Core dependencies plus those of ``extras``, self-references expanded, duplicates dropped."""
    project = pyproject["project"]
    name = _normalise(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject has {sorted(optional)}")
        seen.add(extra)
        for req in optional[extra]:
            match = _SELF.match(req)
            if match and _normalise(match["name"]) == name:
                todo += [e.strip() for e in match["extras"].split(",")]
            else:
                out.append(req)
    return list(dict.fromkeys(out))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = tomllib.loads(Path(argv[0]).read_text())
    extras = [e.strip() for e in argv[1].split(",") if e.strip()]
    print("\n".join(requirements(data, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
