import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from papers_shared import cli, methods

PLUGIN = textwrap.dedent("""
    from papers_shared.methods import DemoResult, Method, Table

    def info():
        return [Table(["variant", "params"], [["tiny", 12]], title="fake")]

    def demo(*, full=False, output_root=None, progress=None, seed=0):
        ours, base = (0.9, 0.5) if full else (0.8, 0.5)
        table = Table(["method", "acc"], [["ours", ours], ["base", base]])
        return DemoResult("fake", "ours beats base", "acc", ours, base, ours > base, table)

    def judged_demo(*, full=False, output_root=None, progress=None, seed=0):
        from papers_shared.verdict import judge_claim

        seeds = 3 if full else 2
        v = judge_claim([0.9, 0.8, 0.85][:seeds], [0.5, 0.55, 0.5][:seeds], margin=0.1,
                        method_name="ours", baseline_name="base", metric="acc", quick=not full)
        return DemoResult("judged", "ours beats base", "acc", table=Table(["a"], [[1]]), verdicts=[v])

    def broken_demo(**kwargs):
        raise RuntimeError("boom")

    METHOD = Method("fake", "A fake paper", info, demo)
    BROKEN = Method("broken", "A broken paper", info, broken_demo)
    JUDGED = Method("judged", "A judged paper", info, judged_demo)
    NOT_A_METHOD = 42
""")


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    (tmp_path / "fake_papers_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        EntryPoint("fake", "fake_papers_plugin:METHOD", methods.ENTRY_POINT_GROUP),
        EntryPoint("broken", "fake_papers_plugin:BROKEN", methods.ENTRY_POINT_GROUP),
        EntryPoint("weird", "fake_papers_plugin:NOT_A_METHOD", methods.ENTRY_POINT_GROUP),
        EntryPoint("judged", "fake_papers_plugin:JUDGED", methods.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        methods, "entry_points", lambda group: eps if group == methods.ENTRY_POINT_GROUP else []
    )
    yield
    sys.modules.pop("fake_papers_plugin", None)


def test_list_shows_installed_and_broken_plugins(fake_plugins, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "A fake paper" in out and "failed to load" in out and "weird" in out


def test_demo_summary_reports_failures_without_stopping(fake_plugins, capsys, tmp_path):
    code = cli.main(["demo", "fake", "broken", "absent", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "| fake" in out and "held" in out and "0.8" in out
    assert "error: RuntimeError: boom" in out and "not installed" in out


def test_demo_full_mode_is_passed_through(fake_plugins, capsys, tmp_path):
    assert cli.main(["demo", "fake", "--full", "--output-dir", str(tmp_path)]) == 0
    assert "0.9" in capsys.readouterr().out


def test_info_prints_tables(fake_plugins, capsys):
    assert cli.main(["info", "fake"]) == 0
    assert "| tiny" in capsys.readouterr().out


def test_nothing_installed_is_said_clearly(monkeypatch, capsys):
    monkeypatch.setattr(methods, "entry_points", lambda group: [])
    assert cli.main(["demo"]) == 0 and cli.main(["list"]) == 0
    assert "no method package is installed" in capsys.readouterr().out


def test_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="cells"):
        methods.Table(["a", "b"], [[1]])


def test_package_parser_has_info_demo_and_examples(fake_plugins, capsys):
    from papers_shared.cli_utils import build_package_parser, parse_and_run
    from papers_shared.methods import discover_methods

    method = discover_methods()["fake"]
    parser, sub = build_package_parser(method, "Fake.", ["fake info", "fake demo --quick"])
    sub.add_parser("train")
    assert "fake demo --quick" in parser.format_help()
    assert parse_and_run(parser, ["demo"]) == 0
    assert "0.8" in capsys.readouterr().out  # quick by default
    assert parse_and_run(parser, ["demo", "--full", "--json"]) == 0
    assert '"ours": 0.9' in capsys.readouterr().out


def test_demo_summary_shows_arms_margin_and_verdict(fake_plugins, capsys, tmp_path):
    assert cli.main(["demo", "judged", "--full", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ours 0.85 +- 0.05 (n=3)" in out and "base 0.5167 +- 0.029 (n=3)" in out
    assert "| 0.1 " in out and "| held " in out


def test_quick_demo_summary_says_too_few_seeds(fake_plugins, capsys, tmp_path):
    assert cli.main(["demo", "judged", "--output-dir", str(tmp_path)]) == 0
    assert "not shown (quick: 2 seeds)" in capsys.readouterr().out


def test_global_flags_after_the_subcommand(fake_plugins, capsys):
    assert cli.main(["list", "-q"]) == 0
    assert cli.main(["info", "fake", "-v"]) == 0
    assert (
        "(default: runs)"
        in cli.build_parser()._subparsers._group_actions[0].choices["demo"].format_help()
    )
