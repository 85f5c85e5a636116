#!/usr/bin/env python3
"""Print the workspace members as JSON for the CI matrix.

    python tools/matrix.py                       # every member
    python tools/matrix.py --changed-since REF   # members whose folder (or shared/) changed since REF
    python tools/matrix.py --extra mmseg         # members with an [mmseg] extra (combines with the above)

Each entry: {"name": dist name, "path": folder, "import": import name, "extras": [...]}.
A change under shared/ or to the root workspace files selects every member. Members are the
folders matching the root pyproject's `[tool.uv.workspace] members` that hold a pyproject.toml, so
a new package is picked up as soon as it has one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
GLOBAL_PATHS = ("shared/", "pyproject.toml", "uv.lock", "tools/", ".github/", ".ci/")


def members() -> list[dict]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = root["tool"]["uv"]["workspace"]["members"]
    found = []
    for pattern in patterns:
        for folder in sorted(ROOT.glob(pattern)):
            pyproject = folder / "pyproject.toml"
            if not pyproject.exists():
                continue
            project = tomllib.loads(pyproject.read_text())["project"]
            wheel = tomllib.loads(pyproject.read_text()).get("tool", {}).get("hatch", {})
            packages = (
                wheel.get("build", {}).get("targets", {}).get("wheel", {}).get("packages", [])
            )
            import_name = Path(packages[0]).name if packages else project["name"].replace("-", "_")
            found.append(
                {
                    "name": project["name"],
                    "path": str(folder.relative_to(ROOT)),
                    "import": import_name,
                    "extras": sorted(project.get("optional-dependencies", {})),
                }
            )
    return found


def changed_files(ref: str) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", ref, "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--changed-since", metavar="REF", help="only members touched since this git ref"
    )
    parser.add_argument("--names", action="store_true", help="print dist names, one per line")
    parser.add_argument(
        "--extra", metavar="NAME", help="only members that declare this optional extra (e.g. mmseg)"
    )
    args = parser.parse_args(argv)
    selected = members()
    if args.extra:
        selected = [m for m in selected if args.extra in m["extras"]]
    if args.changed_since:
        files = changed_files(args.changed_since)
        if not any(f.startswith(GLOBAL_PATHS) or f in GLOBAL_PATHS for f in files):
            selected = [m for m in selected if any(f.startswith(m["path"] + "/") for f in files)]
    if args.names:
        print("\n".join(m["name"] for m in selected))
    else:
        print(json.dumps(selected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
