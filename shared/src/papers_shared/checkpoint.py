"""Checkpoint reading and writing: safetensors and torch pickles (always ``weights_only=True``).

Typical use::

    state = read_state_dict("model.pth", key_map=my_converter)
    load_state_dict_checked(model, state)          # raises CheckpointMismatchError with a full report
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "KeyReport",
    "read_state_dict",
    "unwrap_state_dict",
    "load_state_dict_checked",
    "save_safetensors",
]

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

    def describe(self, limit: int = 20) -> str:
        lines = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
                lines.append(f"{len(items)} {title} key(s): {shown}")
        if self.shape_mismatch:
            shown = ", ".join(
                f"{k} (checkpoint {tuple(a)}, model {tuple(b)})"
                for k, a, b in self.shape_mismatch[:limit]
            )
            lines.append(f"{len(self.shape_mismatch)} shape mismatch(es): {shown}")
        return "; ".join(lines)


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model; ``report`` has the details."""

    def __init__(self, report: KeyReport, source: str = "checkpoint") -> None:
        self.report = report
        super().__init__(f"{source} does not match the model: {report.describe()}")


def _read_raw(path: Path) -> object:
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
            raise CheckpointError(f"{path} is not a valid safetensors file: {err}") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # torch names the class it refused
            raise CheckpointError(
                f"{path} is not a torch checkpoint (.pth/.pt/.bin): {err}"
            ) from err
        raise CheckpointError(
            f"{path} holds Python objects that need code to load (refused: weights_only=True). "
            f"Re-save it as a plain state dict or safetensors. Detail: {str(err).splitlines()[0]}"
        ) from err
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        IndexError,
        KeyError,
        ValueError,
    ) as err:  # what torch's loader raises on bytes that are not a checkpoint
        raise CheckpointError(
            f"{path} is not a torch checkpoint (.pth/.pt/.bin) or is truncated: {err}"
        ) from err


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> StateDict:
    """Find the tensor mapping inside common containers and strip ``module.`` style prefixes."""
    for _ in range(4):
        if (
            isinstance(obj, Mapping)
            and obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())
        ):
            break
        if not isinstance(obj, Mapping):
            raise CheckpointError(
                f"{source} does not contain a state dict (found {type(obj).__name__})"
            )
        inner = next(
            (obj[k] for k in CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None
        )
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if not tensors:
                raise CheckpointError(
                    f"{source} has no tensors; top-level keys: {sorted(map(str, obj))[:10]}"
                )
            obj = tensors
            break
        obj = inner
    state = {str(k): v for k, v in obj.items()}  # type: ignore[union-attr]
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path, key_map: KeyMap | None = None) -> StateDict:
    """Read a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file into a flat state dict.

    ``key_map`` (e.g. a package's ``checkpoint_filter_fn``) is applied after unwrapping.
    """
    path = Path(path)
    state = unwrap_state_dict(_read_raw(path), source=str(path))
    return key_map(state) if key_map is not None else state


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    source: str = "checkpoint",
) -> KeyReport:
    """Load strictly, except keys starting with an allowed prefix; report every problem at once.

    Raises ``CheckpointMismatchError`` before touching the model when anything else is off.
    """
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(allow_unexpected)
    own = model.state_dict()
    report = KeyReport()
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.shape_mismatch.append((key, tuple(value.shape), tuple(own[key].shape)))
    report.missing = [k for k in own if k not in state_dict]
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
        raise CheckpointMismatchError(blocking, source)
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
