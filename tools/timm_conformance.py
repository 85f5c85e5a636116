#!/usr/bin/env python3
"""Run timm's own model test file (``tests/test_models.py``) on every model our packages register.

timm publishes its test suite only in its source distribution. This tool reads the timm version
from ``uv.lock``, takes ``tests/test_models.py`` out of that version's sdist (which must already be
in the cache folder; the tool never downloads anything), and runs it with pytest for exactly the
model names that our packages register in timm's registry. It prints one row per test with the
result for every model, and totals.

    python tools/timm_conformance.py                    # run and print the table (exit 1 on failure)
    python tools/timm_conformance.py --list             # only print the model names found
    python tools/timm_conformance.py --print-version    # the locked timm version
    python tools/timm_conformance.py -k forward_fx      # extra pytest arguments after the options

How the file is run, as a user would run it for third-party models:
- every workspace package is imported first, so its ``@register_model`` names exist;
- a model is "ours" when its entry point function is defined in one of our packages' modules;
- the modules those models live in are appended to the file's ``FEAT_INTER_FILTERS`` (the list of
  modules whose models claim ``forward_intermediates`` support), so those tests run for them too;
- tests parametrised over other model names, and tests with no model name, are deselected;
- tests that download weights (``NETWORK_TESTS``) are deselected: nothing here uses the network;
- model families whose output is a token sequence rather than a (B, C, H, W) map are appended to
  the file's ``NON_STD_FILTERS`` (``NON_STD`` below), as timm does for its own ViTs: timm then
  runs its non-standard config test on them instead of the spatial one;
- ``SKIPS`` below is the one place that lists a test skipped for a specific model, with the reason.

The sdist is fetched once (e.g. in a CI install step) with:

    pip download --no-binary :all: --no-deps timm==<locked version> -d <cache folder>

The cache folder is ``--sdist-dir``, else ``$TIMM_SDIST_DIR``, else ``~/.cache/papers-timm-sdist``.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import ROOT, members  # noqa: E402

# (test function, model name) -> why that test cannot apply to that model by design. Each entry
# must also be explained in the package README. Model names are architecture names, without a
# pretrained tag.
_FROZEN_BACKBONE = (
    "every parameter must receive a gradient, but DyT freezes the pre-trained ViT by design "
    "(the paper, Sec. 3: only adapters, token dispatchers and the head train); see "
    "packages/dyt-tuning/README.md"
)
SKIPS: dict[tuple[str, str], str] = {
    (test, model): _FROZEN_BACKBONE
    for test in ("test_model_backward", "test_model_backward_fx")
    for model in ("dyt_vit_test", "dyt_vit_base_patch16_224", "dyt_vit_large_patch16_224")
}

# Name patterns appended to the file's NON_STD_FILTERS, with the reason.
NON_STD: dict[str, str] = {
    "dyt_vit_*": "ViT: forward_features returns tokens (B, N, C), as timm's own vit_* models",
}

# Tests that fetch pretrained weights or test images from the Hugging Face Hub.
NETWORK_TESTS = {
    "test_model_inference": "downloads reference tensors and an image from the Hugging Face Hub",
    "test_model_load_pretrained": "downloads pretrained weights",
    "test_model_features_pretrained": "downloads pretrained weights",
}

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/papers-timm-sdist"))
TEST_FILE = "tests/test_models.py"

CONFTEST = '''\
"""Written by tools/timm_conformance.py: selects our models, records one result per test."""

import importlib
import importlib.util
import json
import os
import re
import socket

import pytest

_ERROR = re.compile(r"^[A-Za-z_.]*(Error|Exception|Failure)\\b")

_CFG = json.loads(open(os.environ["PAPERS_TIMM_CONFORMANCE_CONFIG"]).read())
for _name in _CFG["imports"]:
    importlib.import_module(_name)
    if importlib.util.find_spec(_name + ".models") is not None:
        importlib.import_module(_name + ".models")
_OURS = set(_CFG["models"])
_SKIPS = {(t, m): r for t, m, r in _CFG["skips"]}
_NETWORK = _CFG["network_tests"]
_RESULTS = open(_CFG["results"], "a")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"conformance tests must not use the network ({address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


def _arch(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = params.get("model_name")
    return name.split(".")[0] if isinstance(name, str) else None


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        arch = _arch(item)
        if arch in _OURS and item.originalname not in _NETWORK:
            keep.append(item)
            reason = _SKIPS.get((item.originalname, arch))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
        else:
            drop.append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        item_id = report.nodeid
        message = ""
        if report.outcome == "failed":
            text = str(report.longrepr)
            lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
            lines = [ln for ln in lines if ln]
            named = [i for i, ln in enumerate(lines) if _ERROR.match(ln)]
            if named:  # e.g. TorchScript's "RuntimeError:" is followed by the actual reason
                message = " ".join(lines[named[0] : named[0] + 3])
            else:
                message = (lines or text.splitlines()[-1:] or [""])[0]
            message = message[:300]
        elif report.outcome == "skipped":
            longrepr = report.longrepr
            message = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)[:300]
        _RESULTS.write(json.dumps({
            "nodeid": item_id, "when": report.when, "outcome": report.outcome,
            "message": message, "seconds": round(report.duration, 3),
        }) + "\\n")
        _RESULTS.flush()


def pytest_collection_finish(session):
    with open(_CFG["collected"], "w") as handle:
        json.dump([[i.nodeid, i.originalname, _arch(i)] for i in session.items], handle)
'''

PYTEST_INI = """[pytest]
addopts = -p no:cacheprovider
markers =
    base
    cfg
    cfg_nonstd
    forward
    backward
    torchscript
    features
    fxforward
    fxbackward
    timeout(seconds): timm's per-test limit (enforced only when pytest-timeout is installed)
filterwarnings =
    ignore::DeprecationWarning
    ignore::UserWarning
"""


def _locked_timm(lock: Path = ROOT / "uv.lock") -> dict:
    data = tomllib.loads(lock.read_text())
    entries = [p for p in data.get("package", []) if p.get("name") == "timm"]
    if len(entries) != 1:
        raise SystemExit(f"expected one timm entry in {lock}, found {len(entries)}")
    return entries[0]


def locked_timm_version() -> str:
    return _locked_timm()["version"]


def find_sdist(cache: Path, version: str) -> Path:
    """The cached sdist, checked against the sha256 that uv.lock records for it."""
    path = cache / f"timm-{version}.tar.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"timm {version} source distribution not found at {path}. Fetch it once (network) with:\n"
            f"  python -m pip download --no-binary :all: --no-deps timm=={version} -d {cache}"
        )
    expected = _locked_timm().get("sdist", {}).get("hash", "")
    if expected.startswith("sha256:"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected.removeprefix("sha256:"):
            raise FileNotFoundError(
                f"{path} does not match the sha256 in uv.lock ({expected}); delete it and fetch "
                f"it again"
            )
    return path


def extract_test_file(sdist: Path, version: str, dest: Path) -> Path:
    member = f"timm-{version}/{TEST_FILE}"
    with tarfile.open(sdist) as tar:
        try:
            handle = tar.extractfile(member)
        except KeyError:
            handle = None
        if handle is None:
            raise SystemExit(f"{sdist} has no {member}")
        text = handle.read().decode()
    out = dest / "test_models.py"
    out.write_text(text)
    return out


def append_to_list(test_file: Path, variable: str, items: list[str], note: str) -> None:
    """Append ``items`` to the module-level list ``variable`` right after the file defines it."""
    text = test_file.read_text()
    end = None
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            end = node.end_lineno
    if end is None:
        raise SystemExit(f"{test_file} no longer defines {variable}; update this tool")
    lines = text.splitlines(keepends=True)
    lines.insert(end, f"{variable} = {variable} + {items!r}  # {note}\n")
    test_file.write_text("".join(lines))


def import_package(name: str) -> None:
    """Import a package and, when it has one, its ``models`` module (where timm names register)."""
    importlib.import_module(name)
    if importlib.util.find_spec(f"{name}.models") is not None:
        importlib.import_module(f"{name}.models")


def our_models(import_names: list[str]) -> dict[str, str]:
    """Import our packages and return {model name: registry module} for models they define."""
    for name in import_names:
        if importlib.util.find_spec(name) is None:
            print(f"warning: workspace package {name!r} is not installed (run `uv sync`)")
            continue
        try:
            import_package(name)
        except Exception as err:  # a broken package must fail the run, with one clear line
            raise SystemExit(
                f"error: importing {name} failed: {type(err).__name__}: {err}"
            ) from err
    from timm.models import _registry

    roots = set(import_names)
    found = {}
    for model, fn in _registry._model_entrypoints.items():
        if fn.__module__.split(".")[0] in roots:
            found[model] = _registry._model_to_module[model]
    return dict(sorted(found.items()))


def summarize(results: list[dict], collected: list[list], models: list[str]) -> tuple[str, dict]:
    by_id = {nodeid: (test, arch) for nodeid, test, arch in collected}
    cell: dict[tuple[str, str], list[str]] = defaultdict(list)
    messages = []
    for row in results:
        test, arch = by_id.get(row["nodeid"], (None, None))
        if test is None:
            continue
        cell[(test, arch)].append(row["outcome"])
        if row["outcome"] == "failed":
            messages.append(f"  {test}[{arch}] ({row['when']}): {row['message']}")
    tests = sorted({test for _, test, _ in collected})
    code = {"passed": "ok", "failed": "FAIL", "skipped": "skip"}

    def outcome(test: str, arch: str) -> str | None:
        got = cell.get((test, arch))
        if not got:
            return None
        if "failed" in got:
            return "failed"
        return "skipped" if "skipped" in got else "passed"

    width = max([len(t) for t in tests] + [4])
    short = list(models)
    labels = {m: f"[{i + 1}]" for i, m in enumerate(short)}
    lines = [f"{labels[m]:>5} {m}" for m in short] + [""]
    header = f"{'test':<{width}}  " + "  ".join(f"{labels[m]:>4}" for m in short)
    lines += [header, "-" * len(header)]
    totals = {"passed": 0, "failed": 0, "skipped": 0, "not run": 0}
    per_test = {}
    for test in tests:
        cells = []
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for m in short:
            applies = any(t == test and a == m for _, t, a in collected)
            if not applies:
                cells.append(f"{'-':>4}")
                continue
            got = outcome(test, m)
            if got is None:
                totals["not run"] += 1
                cells.append(f"{'?':>4}")
                continue
            counts[got] += 1
            totals[got] += 1
            cells.append(f"{code[got]:>4}")
        per_test[test] = counts
        lines.append(f"{test:<{width}}  " + "  ".join(cells))
    per_model = {}
    for m in short:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for test in tests:
            got = outcome(test, m)
            if got:
                counts[got] += 1
        per_model[m] = counts
    lines.append("")
    lines.append(
        "per model: "
        + "; ".join(f"{m} {c['passed']} ok / {c['failed']} failed" for m, c in per_model.items())
    )
    run = totals["passed"] + totals["failed"] + totals["skipped"]
    lines.append(
        f"total: {run} (test, model) pairs: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['skipped']} skipped"
        + (f", {totals['not run']} not run" if totals["not run"] else "")
    )
    if messages:
        lines.append("")
        lines.append("failures (last error line):")
        lines.extend(messages)
    summary = {"totals": totals, "per_test": per_test, "per_model": per_model}
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sdist-dir", type=Path, help="folder holding timm-<version>.tar.gz")
    parser.add_argument("--list", action="store_true", help="print our model names and exit")
    parser.add_argument(
        "--print-version", action="store_true", help="print the locked timm version and exit"
    )
    parser.add_argument("--json", type=Path, help="also write the per-test counts to this file")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: temporary)")
    args, pytest_args = parser.parse_known_args(argv)

    version = locked_timm_version()
    if args.print_version:
        print(version)
        return 0
    import_names = [m["import"] for m in members()]
    models = our_models(import_names)
    if args.list:
        for name, module in models.items():
            print(f"{name}  (module {module})")
        return 0
    if not models:
        print("no timm model is registered by the workspace packages; nothing to check")
        return 1
    import timm

    if timm.__version__ != version:
        print(f"installed timm is {timm.__version__} but uv.lock has {version}; run `uv sync`")
        return 1
    cache = args.sdist_dir or Path(os.environ.get("TIMM_SDIST_DIR", DEFAULT_CACHE))
    try:
        sdist = find_sdist(cache, version)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2

    work = args.keep or Path(tempfile.mkdtemp(prefix="timm-conformance-"))
    work.mkdir(parents=True, exist_ok=True)
    test_file = extract_test_file(sdist, version, work)
    modules = sorted(set(models.values()))
    append_to_list(test_file, "FEAT_INTER_FILTERS", modules, "papers workspace modules")
    if NON_STD:
        append_to_list(test_file, "NON_STD_FILTERS", sorted(NON_STD), "papers workspace models")
    (work / "conftest.py").write_text(CONFTEST)
    (work / "pytest.ini").write_text(PYTEST_INI)
    results_path, collected_path = work / "results.jsonl", work / "collected.json"
    results_path.write_text("")
    config = {
        "imports": [n for n in import_names if importlib.util.find_spec(n) is not None],
        "models": list(models),
        "skips": [[t, m, r] for (t, m), r in SKIPS.items()],
        "network_tests": sorted(NETWORK_TESTS),
        "results": str(results_path),
        "collected": str(collected_path),
    }
    (work / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "PYTHONPATH")}
    env.update(
        PAPERS_TIMM_CONFORMANCE_CONFIG=str(work / "config.json"),
        HF_HUB_OFFLINE="1",
        TORCH_DEVICE="cpu",
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    print(f"timm {version}: {TEST_FILE} from {sdist}")
    print(f"models ({len(models)}): {', '.join(models)}")
    print(f"modules added to FEAT_INTER_FILTERS: {', '.join(modules)}")
    for pattern, reason in NON_STD.items():
        print(f"added to NON_STD_FILTERS: {pattern} ({reason})")
    unknown = sorted({m for _, m in SKIPS if m not in models})
    unknown += [p for p in NON_STD if not fnmatch.filter(models, p)]
    if unknown:
        print(f"SKIPS / NON_STD name models that are not registered: {unknown}")
        return 1
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "test_models.py", "-q", "-rfE", "-p", "no:randomly"]
    proc = subprocess.run(
        [*cmd, *pytest_args], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if not collected_path.exists():
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        print("pytest did not collect the file")
        return 1
    collected = json.loads(collected_path.read_text())
    results = [json.loads(line) for line in results_path.read_text().splitlines() if line]
    table, summary = summarize(results, collected, list(models))
    print(table)
    applied = {(test, arch) for _, test, arch in collected}
    unused = sorted(k for k in SKIPS if k not in applied)
    if unused:
        print(f"note: SKIPS entries that matched no collected test: {unused}")
    print(f"({elapsed:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    failed = summary["totals"]["failed"] or summary["totals"]["not run"]
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not failed):
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        print(f"pytest exited with {proc.returncode}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
