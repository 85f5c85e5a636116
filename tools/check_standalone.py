#!/usr/bin/env python3
"""Prove that `pip install <package>` works alone, the way a user installs it.

For each package:

1. build its wheel and papers-shared's (`uv build --no-sources`, so workspace paths play no part);
2. create a fresh venv with pip;
3. resolve with pip's own resolver: `pip install --dry-run --report` of the package (plus pytest)
   with only the package's declared dependencies, no constraints, and no pip configuration of
   this machine (`PIP_CONFIG_FILE=/dev/null`, no `PIP_*` index or constraint variables): exactly
   what `pip install <package>` would choose on a clean machine today. These resolutions wait on
   the network, so several run at once (`--jobs`);
4. install exactly that resolved set with `uv pip install --no-deps` (pip would download the same
   multi-GB torch build again for every venv; uv installs the same files from its cache), then
   `pip check`;
5. import the package and run its tests (a copy of `tests/`, outside the source tree, so nothing
   from the workspace can leak in), one package after the other. Tests marked `slow` or
   `distributed` (multi-process runs, which test the same code as in the workspace) are left out
   unless `--with-distributed` is given.

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
from concurrent.futures import ThreadPoolExecutor
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


def build_wheels(names: list[str], dist: Path) -> None:
    """Wheels of papers-shared and the named packages, built without workspace sources."""
    for name in dict.fromkeys(["papers-shared", *names]):
        run(
            [
                "uv",
                "build",
                "--quiet",
                "--package",
                name,
                "--wheel",
                "--out-dir",
                str(dist),
                "--no-sources",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )


def resolve(python: Path, member: dict, dist: Path, report: Path, env: dict) -> list[dict]:
    """pip's resolution of `pip install <package> pytest` (with our wheels found locally)."""
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
        stdout=subprocess.DEVNULL,
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


class Check:
    """One package: prepare (fresh venv + pip's resolution), then install and test."""

    def __init__(self, member: dict, work: Path, dist: Path) -> None:
        self.member, self.work, self.dist = member, work, dist
        self.name = member["name"]
        self.timer = Timer()
        self.env = clean_env()
        self.venv = work / f"venv-{self.name}"
        self.python = self.venv / "bin" / "python"
        self.resolved: list[dict] | None = None
        self.versions: dict[str, str] = {}
        self.error = ""

    def prepare(self) -> None:
        """Network-bound: safe to run for several packages at once."""
        try:
            shutil.rmtree(self.venv, ignore_errors=True)
            with self.timer.phase("venv"):
                # a fresh venv with pip, as `python -m venv` gives, created through uv's cache
                run(
                    ["uv", "venv", "--quiet", "--seed", "--python", sys.executable, str(self.venv)],
                    env=self.env,
                )
            with self.timer.phase("resolve (pip)"):
                self.resolved = resolve(
                    self.python,
                    self.member,
                    self.dist,
                    self.work / f"report-{self.name}.json",
                    self.env,
                )
        except subprocess.CalledProcessError as err:
            self.error = f"step failed: {' '.join(map(str, err.cmd))}"

    def finish(self, pytest_args: list[str], marks: str) -> bool:
        if self.resolved is None:
            return False
        path, import_name, env = ROOT / self.member["path"], self.member["import"], self.env
        try:
            with self.timer.phase("install (uv, cached)"):
                self.versions = install_resolved(self.python, self.resolved, env)
            chosen = {k: self.versions[k] for k in REPORTED if k in self.versions}
            print(f"[check_standalone] {self.name}: pip chose {chosen}", flush=True)
            tests = self.work / f"tests-{self.name}"
            shutil.rmtree(tests, ignore_errors=True)
            shutil.copytree(path / "tests", tests / "tests")
            (tests / "pytest.ini").write_text(PYTEST_INI)
            with self.timer.phase("import"):
                run([str(self.python), "-c", f"import {import_name}"], cwd=tests, env=env)
        except subprocess.CalledProcessError as err:
            self.error = f"step failed: {' '.join(map(str, err.cmd))}"
            return False
        with self.timer.phase("tests"):
            result = subprocess.run(
                [str(self.python), "-m", "pytest", "tests", "-q", "-m", marks, *pytest_args],
                cwd=tests,
                env=env,
                check=False,
            )
        has_tests = any((path / "tests").glob("test_*.py"))
        if result.returncode == 0 or (not has_tests and result.returncode == 5):
            return True
        self.error = f"pytest exited with {result.returncode}"
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packages", nargs="*", help="dist names (papers-shared, ridg, ...)")
    parser.add_argument("--all", action="store_true", help="every workspace member")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument(
        "--with-distributed",
        action="store_true",
        help="also run tests marked distributed (multi-process)",
    )
    parser.add_argument(
        "--jobs", type=int, default=4, help="pip resolutions run at once (they wait on the network)"
    )
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
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="standalone-"))
    work.mkdir(parents=True, exist_ok=True)
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    start = time.perf_counter()
    checks = [Check(known[n], work, dist) for n in names]
    failed = []
    try:
        try:
            build_wheels(names, dist)
        except subprocess.CalledProcessError as err:
            print(f"[check_standalone] building wheels failed: {' '.join(map(str, err.cmd))}")
            return 1
        build_seconds = time.perf_counter() - start
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for _ in pool.map(Check.prepare, checks):
                pass
        prepare_seconds = time.perf_counter() - start - build_seconds
        for check in checks:
            marks = "not slow" if args.with_distributed else "not slow and not distributed"
            ok = check.finish(extra, marks)
            print(
                f"[check_standalone] {check.name}: {'ok' if ok else 'FAILED ' + check.error}",
                flush=True,
            )
            if not ok:
                failed.append(check.name)
            if args.keep is None:  # a venv holds a few GB of torch and CUDA libraries
                shutil.rmtree(check.venv, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - start
    print(
        f"\n[check_standalone] {len(checks)} package(s) in {total:.0f} s: wheels {build_seconds:.0f} s, "
        f"venvs + pip resolutions ({args.jobs} at once) {prepare_seconds:.0f} s; per package:"
    )
    for check in checks:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in check.timer.phases.items())
        versions = " ".join(f"{k}={check.versions[k]}" for k in REPORTED if k in check.versions)
        status = "FAILED" if check.name in failed else "ok"
        print(f"  {check.name:<16} {status:<6} ({phases})  {versions}")
    if failed:
        print(f"[check_standalone] failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
