#!/usr/bin/env python3
"""Prove that `pip install <package>` works alone, the way a user installs it.

For each package:

1. build its wheel and papers-shared's (`uv build --no-sources`, so workspace paths play no part);
2. create a fresh venv;
3. resolve with pip's own resolver: `pip install --dry-run --report` of the package (plus pytest)
   with only the package's declared dependencies, no constraints, and no pip configuration of
   this machine (`PIP_CONFIG_FILE=/dev/null`, no `PIP_*` index or constraint variables): exactly
   what `pip install <package>` would choose on a clean machine today;
4. install exactly that resolved set with `uv pip install --no-deps` (pip would download the same
   multi-GB torch build again for every venv; uv installs the same files from its cache), then
   `pip check`;
5. import the package and run its tests (a copy of `tests/`, outside the source tree, so nothing
   from the workspace can leak in).

    python tools/check_standalone.py ridg
    python tools/check_standalone.py --all
    python tools/check_standalone.py softinfonce --keep /tmp/standalone -- -x -k decode

Prints how long each phase took, per package, and the torch / torchvision / torchaudio versions
pip chose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import ROOT, members  # noqa: E402

PYTEST_INI = """[pytest]
addopts = --import-mode=importlib -p no:cacheprovider -rfE
markers =
    slow: long tests
    mmseg: needs mmsegmentation
    distributed: starts several processes
    gpu: needs a GPU
"""

# pip settings that only say how to talk to the index; everything else (extra indexes, find-links,
# constraints, config files) would change what gets resolved, and a user's machine has none of it.
KEEP_PIP_ENV = {"PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT"}
DROP_UV_ENV = {
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_BUILD_CONSTRAINT",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_EXCLUDE_NEWER",
    "UV_NO_INDEX",
    "UV_OFFLINE",
}
REPORTED = ("torch", "torchvision", "torchaudio", "timm", "numpy")


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        and not (k.startswith("PIP_") and k not in KEEP_PIP_ENV)
        and k not in DROP_UV_ENV
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    env["UV_NO_CONFIG"] = "1"
    return env


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


class Timer:
    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def phase(self, name: str):
        timer = self

        class _Phase:
            def __enter__(self) -> None:
                self.start = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.phases[name] = time.perf_counter() - self.start

        return _Phase()


def build_wheels(member: dict, dist: Path) -> list[Path]:
    shutil.rmtree(dist, ignore_errors=True)
    names = ["papers-shared"] + ([member["name"]] if member["name"] != "papers-shared" else [])
    for name in names:
        run(
            ["uv", "build", "--package", name, "--wheel", "--out-dir", str(dist), "--no-sources"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    return sorted(dist.glob("*.whl"))


def resolve(python: Path, member: dict, dist: Path, report: Path, env: dict) -> list[dict]:
    """pip's resolution of `pip install <package> pytest` (with our two wheels found locally)."""
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--report",
            str(report),
            "--find-links",
            str(dist),
            member["name"],
            "pytest",
        ],
        env=env,
    )
    return json.loads(report.read_text())["install"]


def install_resolved(python: Path, resolved: list[dict], env: dict) -> dict[str, str]:
    """Install exactly pip's choices: local wheels by path, the rest by name==version."""
    specs, versions = [], {}
    for item in resolved:
        meta, url = item["metadata"], item["download_info"]["url"]
        versions[meta["name"].lower()] = meta["version"]
        if url.startswith("file://"):
            specs.append(url.removeprefix("file://"))
        else:
            specs.append(f"{meta['name']}=={meta['version']}")
    run(
        ["uv", "pip", "install", "--quiet", "--no-deps", "--python", str(python), *specs],
        env=env,
    )
    run([str(python), "-m", "pip", "check"], env=env)
    return versions


def check(member: dict, work: Path, pytest_args: list[str]) -> tuple[bool, dict]:
    name, path = member["name"], ROOT / member["path"]
    timer = Timer()
    info: dict = {"phases": timer.phases}
    env = clean_env()
    dist = work / "dist"
    with timer.phase("build"):
        build_wheels(member, dist)
    venv = work / f"venv-{name}"
    shutil.rmtree(venv, ignore_errors=True)
    python = venv / "bin" / "python"
    with timer.phase("venv"):
        run([sys.executable, "-m", "venv", str(venv)], env=env)
    with timer.phase("resolve (pip)"):
        resolved = resolve(python, member, dist, work / f"report-{name}.json", env)
    with timer.phase("install (uv, cached)"):
        versions = install_resolved(python, resolved, env)
    info["versions"] = {k: versions[k] for k in REPORTED if k in versions}
    print(f"[check_standalone] {name}: pip chose {info['versions']}", flush=True)
    tests = work / f"tests-{name}"
    shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(path / "tests", tests / "tests")
    (tests / "pytest.ini").write_text(PYTEST_INI)
    with timer.phase("import"):
        run(
            [str(python), "-c", f"import {member['import']}; print({member['import']}.__file__)"],
            cwd=tests,
            env=env,
        )
    with timer.phase("tests"):
        result = subprocess.run(
            [str(python), "-m", "pytest", "tests", "-q", "-m", "not slow", *pytest_args],
            cwd=tests,
            env=env,
            check=False,
        )
    has_tests = any((path / "tests").glob("test_*.py"))
    ok = result.returncode == 0 or (not has_tests and result.returncode == 5)
    return ok, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packages", nargs="*", help="dist names (papers-shared, ridg, ...)")
    parser.add_argument("--all", action="store_true", help="every workspace member")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, extra = argv[:cut], argv[cut + 1 :]  # after --: extra pytest arguments
    args = parser.parse_args(argv)
    known = {m["name"]: m for m in members()}
    names = list(known) if args.all else args.packages
    if not names:
        parser.error("name a package or pass --all")
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown package(s) {unknown}; members: {sorted(known)}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="standalone-"))
    work.mkdir(parents=True, exist_ok=True)
    failed, rows = [], []
    try:
        for name in names:
            start = time.perf_counter()
            try:
                ok, info = check(known[name], work, extra)
            except subprocess.CalledProcessError as err:
                print(f"[check_standalone] {name}: step failed: {' '.join(map(str, err.cmd))}")
                ok, info = False, {"phases": {}, "versions": {}}
            total = time.perf_counter() - start
            print(f"[check_standalone] {name}: {'ok' if ok else 'FAILED'} ({total:.0f} s)")
            rows.append((name, ok, total, info))
            if not ok:
                failed.append(name)
            if args.keep is None:  # a venv holds a few GB of torch and CUDA libraries
                shutil.rmtree(work / f"venv-{name}", ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n[check_standalone] summary (seconds per phase)")
    for name, ok, total, info in rows:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in info["phases"].items())
        versions = " ".join(f"{k}={v}" for k, v in info["versions"].items())
        print(f"  {name:<16} {'ok' if ok else 'FAILED':<6} {total:5.0f} s  ({phases})  {versions}")
    if failed:
        print(f"[check_standalone] failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
