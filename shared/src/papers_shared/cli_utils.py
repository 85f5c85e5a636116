"""Pieces every package CLI shares: subcommands with shown defaults and global flags, the run,
trainer and ``--config`` flags, one-line errors, and the ``info`` / ``demo`` verbs.

A package CLI::

    parser, sub = build_package_parser(METHOD, "DyT: dynamic tuning", ["dyt info", "dyt demo"])
    train = add_command(sub, "train", help="fine-tune on a VTAB-1K task",
                        examples=["dyt train --data-dir vtab --task cifar", "dyt train --resume ..."])
    add_run_flags(train, output_dir_default="runs/dyt-tuning/train")
    add_trainer_flags(train, epochs=100)
    train.set_defaults(handler=_train)   # _train imports torch-heavy modules itself
    ...
    cfg = config_from_args(TrainConfig, args)      # --config file, then the flags typed
    trainer_cfg = trainer_config_from_args(args)   # papers_shared.trainer.TrainerConfig
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from papers_shared.methods import DemoResult, Method

if TYPE_CHECKING:
    from papers_shared.trainer import TrainerConfig

__all__ = [
    "HelpFormatter",
    "build_package_parser",
    "add_command",
    "add_verbosity_flags",
    "add_global_flags",
    "add_run_flags",
    "add_trainer_flags",
    "flag_names",
    "load_config_file",
    "config_from_args",
    "trainer_config_from_args",
    "configure_logging",
    "run_cli",
    "parse_args",
    "parse_and_run",
    "format_demo_result",
    "add_info_command",
    "add_demo_command",
]

logger = logging.getLogger(__name__)
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
ConfigT = TypeVar("ConfigT")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default and keeps the examples' line breaks."""


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def add_global_flags(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``-v/--verbose``, ``-q/--quiet`` and ``--json``. On a subcommand (``top_level=False``) an
    absent flag leaves the value given before the subcommand, so both positions work."""
    default: dict[str, Any] = (
        {"verbose": 0, "quiet": False, "json": False}
        if top_level
        else dict.fromkeys(("verbose", "quiet", "json"), argparse.SUPPRESS)
    )
    group = parser.add_argument_group("global flags")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default["verbose"],
        help="more logging; tracebacks on error (repeat for debug)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default["quiet"],
        help="only warnings and errors",
    )
    group.add_argument(
        "--json", action="store_true", default=default["json"], help="machine-readable output"
    )


def flag_names(name: str, dg_aliases: bool = False) -> list[str]:
    """``["--data-dir"]``, plus DomainBed's ``"--data_dir"`` when ``dg_aliases``: use as
    ``parser.add_argument(*flag_names("--data-dir", dg_aliases), ...)``."""
    if not name.startswith("--"):
        raise ValueError(f"flag_names expects a long flag such as '--data-dir', got {name!r}")
    names = [name]
    snake = "--" + name[2:].replace("-", "_")
    if dg_aliases and snake != name:
        names.append(snake)
    return names


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    examples: Sequence[str],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows every default and ends with ``examples`` (give two
    runnable ones), accepting ``-v/-q/--json`` after the subcommand too."""
    if not examples:
        raise ValueError(f"subcommand {name!r} needs runnable examples for its --help")
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=HelpFormatter,
    )
    add_global_flags(parser)
    return parser


def add_run_flags(
    parser: argparse.ArgumentParser,
    *,
    output_dir_default: str | Path | None = None,
    seed_default: int = 0,
    dg_aliases: bool = False,
) -> None:
    """``--seed``, ``--device``, ``--precision``, ``--output-dir`` and ``--config FILE``.

    ``dg_aliases=True`` also accepts DomainBed's snake_case spelling (``--output_dir``); add the
    verb's other DomainBed flags with :func:`flag_names`.
    """
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=seed_default, help="random seed")
    group.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (auto: GPU when available)"
    )
    group.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto = bf16 on a CUDA GPU that supports it, else fp32; fp16 needs CUDA",
    )
    group.add_argument(
        *flag_names("--output-dir", dg_aliases),
        dest="output_dir",
        type=Path,
        default=None if output_dir_default is None else Path(output_dir_default),
        help="run folder (refused if it holds a run, unless --resume or --overwrite)",
    )
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON or YAML file with the package config (a run's config.json works too); "
        "flags given on the command line override it",
    )


def add_trainer_flags(
    parser: argparse.ArgumentParser,
    *,
    epochs: int = 1,
    grad_accum_steps: int = 1,
    clip_grad_norm: float | None = None,
    max_nonfinite: int = 3,
    log_every: int = 50,
    eval_every: int = 1,
    save_every: int = 1,
) -> None:
    """The :class:`papers_shared.trainer.TrainerConfig` flags (pass the paper's defaults)."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs, help="passes over the training data")
    group.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many optimizer steps in total"
    )
    group.add_argument(
        "--grad-accum-steps",
        type=int,
        default=grad_accum_steps,
        help="batches summed into each optimizer step",
    )
    group.add_argument(
        "--clip-grad-norm",
        type=float,
        default=clip_grad_norm,
        help="clip the gradient norm to this value (none: no clipping)",
    )
    group.add_argument(
        "--max-nonfinite",
        type=int,
        default=max_nonfinite,
        help="non-finite losses in a row (each skipped) before the run stops",
    )
    group.add_argument(
        "--log-every", type=int, default=log_every, help="optimizer steps between log lines"
    )
    group.add_argument(
        "--eval-every",
        type=int,
        default=eval_every,
        help="epochs between evaluations (0: only after the last)",
    )
    group.add_argument(
        "--save-every", type=int, default=save_every, help="epochs between checkpoints"
    )
    action = group.add_mutually_exclusive_group()
    action.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its checkpoint"
    )
    action.add_argument(
        "--overwrite", action="store_true", help="delete the run in --output-dir and start again"
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (unset: only when stderr is a terminal)",
    )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml`` / ``.yml``) mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .json, .yaml or .yml, got {path.name}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def _is_run_record(data: Mapping[str, Any]) -> bool:
    return set(data) == {"trainer", "task"}


def _given(args: argparse.Namespace, dest: str) -> bool:
    explicit = getattr(args, "explicit_dests", None)
    if explicit is None:  # parsed without parse_and_run: a value that is set counts as given
        return getattr(args, dest, None) is not None
    return dest in explicit


def config_from_args(
    cls: type[ConfigT],
    args: argparse.Namespace,
    *,
    flags: Mapping[str, str] | Iterable[str] | None = None,
) -> ConfigT:
    """Build the config dataclass ``cls`` from, in rising priority: the flags' defaults, the
    ``--config`` file, the flags typed on the command line.

    ``flags`` maps argparse dests to field names (an iterable means the same names); by default
    every dest named like a field of ``cls``. In a run's ``config.json`` the ``"task"`` part is
    used. ``cls.from_dict`` is used when it exists (so unknown keys are refused).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"config_from_args needs a dataclass type, got {cls!r}")
    field_names = {f.name for f in dataclasses.fields(cls)}
    if flags is None:
        mapping = {name: name for name in field_names if hasattr(args, name)}
    elif isinstance(flags, Mapping):
        mapping = dict(flags)
    else:
        mapping = {name: name for name in flags}
    unknown = sorted(set(mapping.values()) - field_names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    data: dict[str, Any] = {
        field: getattr(args, dest)
        for dest, field in mapping.items()
        if hasattr(args, dest) and not _given(args, dest) and getattr(args, dest) is not None
    }
    config_path = getattr(args, "config", None)
    if config_path is not None:
        loaded = load_config_file(config_path)
        data.update(loaded["task"] if _is_run_record(loaded) else loaded)
    data.update(
        {
            field: getattr(args, dest)
            for dest, field in mapping.items()
            if hasattr(args, dest) and _given(args, dest)
        }
    )
    from_dict = getattr(cls, "from_dict", None)
    if callable(from_dict):
        return cast(ConfigT, from_dict(data))
    unknown = sorted(set(data) - field_names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid: {sorted(field_names)}")
    return cls(**data)


_TRAINER_DESTS = (
    "output_dir",
    "epochs",
    "max_steps",
    "precision",
    "grad_accum_steps",
    "clip_grad_norm",
    "log_every",
    "eval_every",
    "save_every",
    "max_nonfinite",
    "seed",
    "device",
    "overwrite",
    "resume",
    "progress",
)


def trainer_config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainerConfig:
    """A :class:`~papers_shared.trainer.TrainerConfig` from :func:`add_run_flags` and
    :func:`add_trainer_flags` values (``overrides`` win). ``--progress`` unset means: a bar when
    stderr is a terminal. A run's ``config.json`` given as ``--config`` supplies the trainer
    settings that were not typed."""
    from papers_shared.trainer import TrainerConfig

    data: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        loaded = load_config_file(config_path)
        if _is_run_record(loaded):
            data.update(
                {
                    k: v
                    for k, v in loaded["trainer"].items()
                    if k not in ("output_dir", "resume", "overwrite")
                }
            )
    for dest in _TRAINER_DESTS:
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if dest in data and not _given(args, dest):
            continue
        data[dest] = value
    if data.get("progress") is None:
        data["progress"] = sys.stderr.isatty()
    if data.get("output_dir") is None and "output_dir" not in overrides:
        raise ValueError("--output-dir is required for training")
    data.update(overrides)
    if isinstance(data.get("output_dir"), Path):
        data["output_dir"] = str(data["output_dir"])
    return TrainerConfig.from_dict(data)


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: INFO by default, WARNING with ``quiet``, DEBUG with ``-vv``. accelerate's
    own per-checkpoint INFO lines show only with ``-v``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING if verbose < 1 else level)


def run_cli(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call ``handler(args)``; on failure print one error line (traceback with ``-v``) and return 1."""
    configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "verbose", 0):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def add_info_command(subparsers: argparse._SubParsersAction, method: Method) -> None:
    """``<pkg> info [--json]``: print the package's params/FLOPs tables."""
    parser = add_command(
        subparsers,
        "info",
        help="parameters and FLOPs per variant, beside the paper's figures",
        examples=[f"{method.name} info", f"{method.name} info --json"],
    )

    def handler(args: argparse.Namespace) -> int:
        tables = method.info()
        if args.json:
            print(json.dumps([t.to_dict() for t in tables], indent=2, default=str))
        else:
            print("\n\n".join(t.render() for t in tables))
        return 0

    parser.set_defaults(handler=handler)


def add_demo_command(subparsers: argparse._SubParsersAction, method: Method) -> None:
    """``<pkg> demo [--quick|--full]``: run the miniature of the paper's claim."""
    parser = add_command(
        subparsers,
        "demo",
        help="reproduce the paper's central claim in miniature on generated data",
        examples=[f"{method.name} demo --quick", f"{method.name} demo --full --output-dir runs"],
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="full", action="store_false", help="about a minute, fewer seeds"
    )
    mode.add_argument(
        "--full", dest="full", action="store_true", help="about ten minutes; the README's numbers"
    )
    parser.set_defaults(full=False)  # store_false above would otherwise make full the default
    parser.add_argument("--output-dir", type=Path, default=Path("runs"), help="root of run folders")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (unset: only when stderr is a terminal)",
    )

    def handler(args: argparse.Namespace) -> int:
        result = method.demo(
            full=args.full, output_root=args.output_dir, progress=args.progress, seed=args.seed
        )
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            print(format_demo_result(result))
        return 0

    parser.set_defaults(handler=handler)


def format_demo_result(result: DemoResult) -> str:
    """The demo's table, then per claim: mean +- std per arm, the margin and the verdict."""
    lines = [result.table.render(), "", f"claim: {result.claim}"]
    lines += result.summary_lines()
    lines.append(f"verdict: {result.verdict}")
    if result.run_dir:
        lines.append(f"outputs: {result.run_dir}")
    return "\n".join(lines)


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def _explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """Dests typed on the command line: parse again with every default suppressed."""
    saved: list[tuple[argparse.Action, Any]] = []
    saved_defaults: list[tuple[argparse.ArgumentParser, dict[str, Any]]] = []
    try:
        for p in _all_parsers(parser):
            saved_defaults.append((p, dict(p._defaults)))
            p._defaults.clear()
            for action in p._actions:
                saved.append((action, action.default))
                action.default = argparse.SUPPRESS
        namespace, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
        for p, defaults in saved_defaults:
            p._defaults.update(defaults)
    return set(vars(namespace))


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """``parser.parse_args(argv)`` plus ``explicit_dests``: the dests typed on the command line
    (what :func:`config_from_args` lets override a ``--config`` file)."""
    args = parser.parse_args(argv)
    args.explicit_dests = frozenset(_explicit_dests(parser, argv))
    return args


def parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (see :func:`parse_args`) and dispatch to the chosen subcommand's
    ``handler``."""
    args = parse_args(parser, argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    return run_cli(args.handler, args)


def build_package_parser(
    method: Method, description: str, examples: Sequence[str]
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A package CLI's parser with ``-v/-q/--json``, ``info`` and ``demo``; add the package's own
    verbs to the returned subparsers with :func:`add_command`. ``examples`` end the top-level
    ``--help``."""
    parser = argparse.ArgumentParser(
        prog=method.name,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=HelpFormatter,
    )
    add_global_flags(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    add_info_command(subparsers, method)
    add_demo_command(subparsers, method)
    return parser, subparsers
