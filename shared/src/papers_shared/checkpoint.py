"""Checkpoint reading and writing: safetensors and torch pickles, read without running code.

Torch files are read with ``weights_only=True``. The harmless containers that training scripts
store beside the weights are allowed: ``argparse.Namespace``, numpy arrays, dtypes and scalars, and
plain Python containers. Any other object in the file (an ``EasyDict`` of arguments, a logger, a
pickled class) is never constructed: it is read as an empty placeholder and dropped from the result.
If such an object holds tensors, the weights cannot be recovered without its code, and reading
fails with a one-line explanation. ``trust_checkpoint=True`` (CLI: ``--trust-checkpoint``) enables
full unpickling, which runs code from the file, and logs a warning.

Typical use::

    state = read_state_dict("model.pth", key_map=my_converter)
    load_state_dict_checked(model, state)          # raises CheckpointMismatchError with a summary
"""

from __future__ import annotations

import argparse
import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "KeyReport",
    "SAFE_GLOBALS",
    "closest_variant",
    "describe_file",
    "read_checkpoint",
    "read_state_dict",
    "unwrap_state_dict",
    "load_state_dict_checked",
    "save_safetensors",
]

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
KeyMap = Callable[[StateDict], StateDict]

# Containers that training scripts commonly wrap a state dict in, tried in this order.
CONTAINER_KEYS = (
    "state_dict",
    "model",
    "model_state_dict",
    "model_dict",
    "module",
    "net",
    "params",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOWN_KEYS = 5  # key names quoted in one-line error messages


def _numpy_globals() -> list[Any]:
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch
        return []
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    dtype_classes = {type(np.dtype(t)) for t in np.typecodes["All"] if t not in "Mm"}
    dtype_classes |= {type(np.dtype("M8[s]")), type(np.dtype("m8[s]"))}
    found: list[Any] = [np.ndarray, np.dtype, reconstruct, scalar, *sorted(dtype_classes, key=str)]
    # Files written with numpy 1.x name these functions under numpy.core, numpy 2.x under
    # numpy._core; accept both spellings for the same two functions.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found += [(reconstruct, f"{module}._reconstruct"), (scalar, f"{module}.scalar")]
    return found


# Types that may be constructed while reading a torch checkpoint. None of them runs code taken
# from the file.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, *_numpy_globals()]


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint."""


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def describe(self, limit: int = SHOWN_KEYS) -> str:
        """One line: counts, and the first ``limit`` key names of each kind."""
        parts = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
                parts.append(f"{len(items)} {title} key(s) ({shown})")
        if self.shape_mismatch:
            shown = ", ".join(
                f"{k} checkpoint {tuple(a)} vs model {tuple(b)}"
                for k, a, b in self.shape_mismatch[:limit]
            )
            more = ", ..." if len(self.shape_mismatch) > limit else ""
            parts.append(f"{len(self.shape_mismatch)} shape mismatch(es) ({shown}{more})")
        return "; ".join(parts)


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model; ``report`` has the details."""

    def __init__(
        self,
        report: KeyReport,
        source: str = "checkpoint",
        expected: str = "the model",
        looks_like: str | None = None,
    ) -> None:
        self.report = report
        self.looks_like = looks_like
        hint = f"; it looks like {looks_like}" if looks_like else ""
        super().__init__(f"{source} does not match {expected}: {report.describe()}{hint}")


def describe_file(path: str | Path) -> str:
    """What a file looks like from its first bytes, for error messages (e.g. "an HTML page")."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK\x03\x04"):
        return f"a zip archive of {size} bytes"
    if head.startswith(b"\x1f\x8b"):
        return f"a gzip file of {size} bytes"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the weights were not downloaded: run `git lfs pull`)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a failed download?)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return f"a raw pickle stream of {size} bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"a binary file of {size} bytes"
    first = text.splitlines()[0] if text.strip() else ""
    return f"a text file of {size} bytes starting {first[:40]!r}"


_TORCH_EXPECTED = (
    "expected a torch checkpoint (.pth/.pt/.bin written by torch.save) or .safetensors"
)


def _placeholder(name: str) -> type:
    """A stand-in for a class the file names: building it yields a tagged empty OrderedDict.

    The real class is never imported or called. An OrderedDict is what torch's restricted
    unpickler lets a file fill with items and attributes, so the stand-in absorbs whatever state
    the file stores for that object; ``_drop_placeholders`` removes it afterwards.
    """

    def __new__(cls: type, *args: object, **kwargs: object) -> OrderedDict:
        made: OrderedDict = OrderedDict()
        made.__dict__[_TAG] = name
        return made

    return type(f"Unloaded[{name}]", (), {"__new__": __new__, _TAG: name})


_TAG = "_papers_checkpoint_unloaded"


def _holds_tensor(obj: object, depth: int = 0) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if depth > 20:
        return False
    children: Iterable[object] = ()
    if isinstance(obj, Mapping):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    extra = getattr(obj, "__dict__", None)
    if isinstance(extra, dict):
        children = [*children, *extra.values()]
    return any(_holds_tensor(c, depth + 1) for c in children)


def _unloaded_name(obj: object) -> str | None:
    if isinstance(obj, type):
        return obj.__dict__.get(_TAG)
    extra = getattr(obj, "__dict__", None)
    return extra.get(_TAG) if isinstance(extra, dict) else None


def _drop_placeholders(obj: object, where: str, dropped: list[str], source: str) -> object:
    name = _unloaded_name(obj)
    if name is not None:
        if _holds_tensor(obj):
            raise CheckpointError(
                f"{source}: the tensors at {where or 'the top level'} are stored inside a {name} "
                f"object, which needs that class's code to load; re-save the weights as a plain "
                f"state dict, or pass trust_checkpoint=True (CLI: --trust-checkpoint) if you "
                f"trust the file's source"
            )
        dropped.append(f"{where or '<top>'} ({name})")
        return _DROPPED
    if isinstance(obj, Mapping):
        out: dict = OrderedDict() if type(obj) is OrderedDict else {}
        for key, value in obj.items():
            kept = _drop_placeholders(
                value, f"{where}.{key}" if where else str(key), dropped, source
            )
            if kept is not _DROPPED:
                out[key] = kept
        return out
    if isinstance(obj, (list, tuple)):
        items = [_drop_placeholders(v, f"{where}[{i}]", dropped, source) for i, v in enumerate(obj)]
        kept_items = [v for v in items if v is not _DROPPED]
        return type(obj)(kept_items) if type(obj) in (list, tuple) else kept_items
    return obj


_DROPPED = object()


def _torch_load_safe(path: Path) -> object:
    """torch.load(weights_only=True) with SAFE_GLOBALS and stand-ins for every other class."""
    try:
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, pickle.UnpicklingError):
        unknown = []  # not a zip checkpoint: torch.load below gives the real error
    allowed = {n for g in SAFE_GLOBALS if isinstance(g, tuple) for n in [g[1]]}
    allowed |= {
        f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS if not isinstance(g, tuple)
    }
    stand_ins = [(_placeholder(n), n) for n in unknown if n not in allowed]
    with torch.serialization.safe_globals([*SAFE_GLOBALS, *stand_ins]):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> object:
    """Read a checkpoint file into Python objects without running code from it.

    ``.safetensors`` gives a dict of tensors. A torch file gives what ``torch.save`` stored, minus
    the objects whose classes are not in ``SAFE_GLOBALS`` (logged at INFO; never constructed).
    ``trust_checkpoint=True`` unpickles everything, running code from the file; only for files
    from a source you trust.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"expected a checkpoint file, got a directory: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is {describe_file(path)}, expected a safetensors file "
                f"({str(err).splitlines()[0][:120]})"
            ) from err
    if trust_checkpoint:
        logger.warning(
            "reading %s with full unpickling (trust_checkpoint=True): this runs code stored in "
            "the file",
            path,
        )
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # anything the file's own code raises
            raise CheckpointError(
                f"{path} is {describe_file(path)} and could not be unpickled: "
                f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            ) from err
    try:
        obj = _torch_load_safe(path)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False; say what the file holds instead.
        text = str(err)
        if "GLOBAL" in text or "global" in text:
            raise CheckpointError(
                f"{path} is a torch checkpoint whose pickle needs Python code to rebuild an "
                f"object that is not plain data ({_refused_name(text)}); re-save the weights as "
                f"a state dict, or pass trust_checkpoint=True (CLI: --trust-checkpoint) if you "
                f"trust the file's source"
            ) from err
        raise CheckpointError(f"{path} is {describe_file(path)}, {_TORCH_EXPECTED}") from err
    except Exception as err:  # no code from the file ran: any failure means unreadable bytes
        raise CheckpointError(
            f"{path} is {describe_file(path)}, {_TORCH_EXPECTED} (is it truncated?)"
        ) from err
    dropped: list[str] = []
    obj = _drop_placeholders(obj, "", dropped, str(path))
    if obj is _DROPPED:
        raise CheckpointError(f"{path} holds a single object that needs code to load")
    if dropped:
        logger.info(
            "%s: skipped %d entr%s that need code to load: %s",
            path,
            len(dropped),
            "y" if len(dropped) == 1 else "ies",
            ", ".join(dropped[:SHOWN_KEYS]) + (", ..." if len(dropped) > SHOWN_KEYS else ""),
        )
    return obj


def _refused_name(text: str) -> str:
    for word in text.replace("`", " ").split():
        if word.count(".") >= 1 and word[0].isalpha() and not word.endswith((".", ",")):
            if word.startswith(("torch.load", "torch.serialization", "weights_only")):
                continue
            return word
    return "an unknown class"


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> StateDict:
    """Find the tensor mapping inside common containers and strip ``module.`` style prefixes.

    Accepts a state dict, or one wrapped the way training scripts save it (``{"model": ...}``,
    ``{"state_dict": ...}``, ``{"module": ...}``, ... beside ``epoch`` / ``optimizer`` / ``args``
    entries), from a file or in memory. Non-tensor entries at the level of the weights are ignored.
    """
    current: object = obj
    for _ in range(4):
        if not isinstance(current, Mapping):
            raise CheckpointError(
                f"{source} holds a {type(current).__name__}, expected a state dict "
                f"(a mapping of parameter names to tensors)"
            )
        if current and all(isinstance(v, torch.Tensor) for v in current.values()):
            break
        inner = next(
            (current[k] for k in CONTAINER_KEYS if isinstance(current.get(k), Mapping)), None
        )
        if inner is None:
            break
        current = inner
    assert isinstance(current, Mapping)  # the loop only continues with mappings
    state = {str(k): v for k, v in current.items() if isinstance(v, torch.Tensor)}
    if not state:
        keys = sorted(map(str, current))
        shown = ", ".join(keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")
        raise CheckpointError(
            f"{source} has no tensors, expected a state dict; its top-level keys: {shown or 'none'}"
        )
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_state_dict(
    path: str | Path, key_map: KeyMap | None = None, *, trust_checkpoint: bool = False
) -> StateDict:
    """Read a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file into a flat state dict.

    ``key_map`` (e.g. a package's ``checkpoint_filter_fn``) is applied after unwrapping. See
    ``read_checkpoint`` for what is read and for ``trust_checkpoint``.
    """
    path = Path(path)
    obj = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    state = unwrap_state_dict(obj, source=str(path))
    return key_map(state) if key_map is not None else state


def _key_report(
    own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
) -> KeyReport:
    report = KeyReport()
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.shape_mismatch.append((key, tuple(value.shape), tuple(own[key].shape)))
    report.missing = [k for k in own if k not in state_dict]
    return report


def closest_variant(
    state_dict: Mapping[str, torch.Tensor],
    variants: Mapping[str, Mapping[str, torch.Tensor] | Mapping[str, tuple[int, ...]]],
) -> str | None:
    """The variant whose keys and shapes agree best with ``state_dict`` (None if none shares a key).

    ``variants`` maps a name to a state dict, or to ``{key: shape}`` (e.g. built on the meta
    device), e.g. ``{"groupmixformer_tiny": tiny.state_dict(), ...}``.
    """
    best, best_score = None, 0.0
    for name, reference in variants.items():
        shapes = {
            k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v)
            for k, v in reference.items()
        }
        agree = sum(
            1
            for k, v in state_dict.items()
            if k in shapes and tuple(getattr(v, "shape", ())) == shapes[k]
        )
        score = agree / max(len(shapes), len(state_dict), 1)
        if score > best_score:
            best, best_score = name, score
    return best


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    source: str = "checkpoint",
    expected: str = "the model",
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> KeyReport:
    """Load strictly, except keys starting with an allowed prefix; report every problem at once.

    Raises ``CheckpointMismatchError`` before touching the model when anything else is off; its
    message is one line: counts of missing / unexpected / mis-shaped keys, the first few of each,
    and, when ``variants`` is given (see ``closest_variant``), the variant the file looks like.
    """
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(allow_unexpected)
    own = model.state_dict()
    report = _key_report(own, state_dict)
    blocking = KeyReport(
        missing=[k for k in report.missing if not k.startswith(allow_missing) or not allow_missing],
        unexpected=[
            k
            for k in report.unexpected
            if not k.startswith(allow_unexpected) or not allow_unexpected
        ],
        shape_mismatch=report.shape_mismatch,
    )
    if not blocking.ok:
        looks_like = closest_variant(state_dict, variants) if variants else None
        raise CheckpointMismatchError(blocking, source, expected=expected, looks_like=looks_like)
    usable = {k: v for k, v in state_dict.items() if k in own}
    model.load_state_dict(usable, strict=False)
    return report


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write tensors (made contiguous; shared storage is cloned) to a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata=dict(metadata) if metadata else None)
    return path
