#!/usr/bin/env python3
"""Prove that `pip install <package>` works alone.

Builds the package's wheel and papers-shared's (`uv build --package`), installs them into a fresh
venv with only their declared dependencies plus pytest, and runs the package's tests from a copy
outside the source tree (so nothing from the workspace can leak in).

    python tools/check_standalone.py ridg
    python tools/check_standalone.py --all

torch / torchvision / torchaudio are constrained to the workspace's pins (a constraint adds no
dependency; it only keeps the resolver on the builds the workspace tests with).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import ROOT, members  # noqa: E402

PYTEST_INI = """[pytest]
addopts = --import-mode=importlib -p no:cacheprovider
markers =
    slow: long tests
    mmseg: needs mmsegmentation
    distributed: starts several processes
"""


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def check(member: dict, work: Path, pytest_args: list[str]) -> bool:
    name, path = member["name"], ROOT / member["path"]
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run(
        [
            "uv",
            "build",
            "--package",
            "papers-shared",
            "--wheel",
            "--out-dir",
            str(dist),
            "--no-sources",
        ],
        cwd=ROOT,
    )
    if name != "papers-shared":
        run(
            ["uv", "build", "--package", name, "--wheel", "--out-dir", str(dist), "--no-sources"],
            cwd=ROOT,
        )
    venv = work / f"venv-{name}"
    shutil.rmtree(venv, ignore_errors=True)
    run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    constraints = work / "constraints.txt"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"][
        "constraint-dependencies"
    ]
    constraints.write_text("\n".join(pins) + "\n")
    run(
        [
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--find-links",
            str(dist),
            "--constraint",
            str(constraints),
            name,
            "pytest",
        ]
    )
    tests = work / f"tests-{name}"
    shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(path / "tests", tests / "tests")
    (tests / "pytest.ini").write_text(PYTEST_INI)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    run(
        [
            str(python),
            "-c",
            f"import {member['import']}; print({member['import']}.__name__, 'imports')",
        ],
        cwd=tests,
        env=env,
    )
    result = subprocess.run(
        [str(python), "-m", "pytest", "tests", "-q", "-m", "not slow", *pytest_args],
        cwd=tests,
        env=env,
        check=False,
    )
    return (
        result.returncode in (0, 5)
        if not any((path / "tests").glob("test_*.py"))
        else result.returncode == 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packages", nargs="*", help="dist names (papers-shared, ridg, ...)")
    parser.add_argument("--all", action="store_true", help="every workspace member")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument(
        "pytest_args", nargs=argparse.REMAINDER, help="after --: extra pytest arguments"
    )
    args = parser.parse_args(argv)
    known = {m["name"]: m for m in members()}
    names = list(known) if args.all else args.packages
    if not names:
        parser.error("name a package or pass --all")
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown package(s) {unknown}; members: {sorted(known)}")
    extra = [a for a in args.pytest_args if a != "--"]
    work = args.keep or Path(tempfile.mkdtemp(prefix="standalone-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = []
    try:
        for name in names:
            ok = check(known[name], work, extra)
            print(f"[check_standalone] {name}: {'ok' if ok else 'FAILED'}", flush=True)
            if not ok:
                failed.append(name)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"[check_standalone] failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
