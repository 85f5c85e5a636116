#!/usr/bin/env python3
"""Per-package releases: each package has its own version, CHANGELOG.md and tag `<dist>-v<version>`.

    python tools/release.py check ridg          # version, changelog entry and tag name agree
    python tools/release.py notes ridg          # the changelog section of the current version
    python tools/release.py from-tag ridg-v0.2.0   # (CI) which package a tag releases; fails on mismatch

Procedure: `uv version --package ridg --bump minor`, move the `[Unreleased]` entries of
packages/ridg/CHANGELOG.md under `## [0.2.0] - YYYY-MM-DD`, commit, `python tools/release.py check ridg`,
then `git tag ridg-v0.2.0 && git push origin ridg-v0.2.0`; .github/workflows/release.yml does the rest.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import ROOT, members  # noqa: E402

TAG = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)-v(?P<version>\d+\.\d+\.\d+(?:[a-z0-9.+-]*)?)$")


def member(name: str) -> dict:
    found = {m["name"]: m for m in members()}
    if name not in found:
        raise SystemExit(f"unknown package {name!r}; members: {sorted(found)}")
    return found[name]


def version_of(m: dict) -> str:
    return tomllib.loads((ROOT / m["path"] / "pyproject.toml").read_text())["project"]["version"]


def changelog_section(m: dict, version: str) -> str:
    text = (ROOT / m["path"] / "CHANGELOG.md").read_text()
    match = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## \[|\Z)", text, re.S | re.M)
    if not match:
        raise SystemExit(f"{m['path']}/CHANGELOG.md has no '## [{version}]' section")
    return match.group(1).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("package")
    sub.add_parser("notes").add_argument("package")
    sub.add_parser("from-tag").add_argument("tag")
    args = parser.parse_args(argv)
    if args.command == "from-tag":
        match = TAG.match(args.tag)
        if not match:
            raise SystemExit(f"tag {args.tag!r} is not of the form <dist-name>-v<version>")
        m = member(match["name"])
        if version_of(m) != match["version"]:
            raise SystemExit(
                f"tag says {match['version']} but {m['path']}/pyproject.toml says {version_of(m)}"
            )
        changelog_section(m, match["version"])
        print(f"name={m['name']}\npath={m['path']}\nversion={match['version']}")
        return 0
    m = member(args.package)
    version = version_of(m)
    section = changelog_section(m, version)
    if args.command == "notes":
        print(section)
    else:
        print(f"{m['name']} {version}: changelog ok; tag {m['name']}-v{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
