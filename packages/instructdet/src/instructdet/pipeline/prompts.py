"""Prompt sets and chat message assembly for the three LLM tasks.

A prompt set is a folder in the released layout:

- ``prompt/instruct.txt``: every line but the last is the task description, the last line is the
  assistant's one-line acknowledgement;
- ``seed/``: few-shot pairs ``<name>.txt`` (user) and ``<name>_des.txt`` (assistant), taken in file-name
  order (names containing "des" are answers); for the level task a single file of
  ``example|graded answer`` lines.

The package ships its own wording for all three tasks (``instructdet/prompts``); users may point to
other folders with the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = [
    "Message",
    "PromptSet",
    "load_prompt_set",
    "default_prompt_dir",
    "build_messages",
    "vicuna_v11_prompt",
    "VICUNA_SYSTEM",
    "level_query",
]

Message = dict[str, str]

#: FastChat's default system message of the ``vicuna_v1.1`` conversation template.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

TASKS = ("gen_instruct", "multi_tgt", "level_instruct")


@dataclass
class PromptSet:
    """Task description, acknowledgement and few-shot (user, assistant) pairs of one task."""

    task: str
    acknowledgement: str
    examples: list[tuple[str, str]]


def default_prompt_dir(task: str) -> Path:
    """The package's own prompt folder for ``task`` (gen_instruct, multi_tgt or level_instruct)."""
    if task not in TASKS:
        raise ValueError(f"unknown prompt task {task!r}; valid tasks are {list(TASKS)}")
    return Path(str(resources.files("instructdet") / "prompts" / task))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip("\n")


def load_prompt_set(folder: str | Path, *, level_format: bool | None = None) -> PromptSet:
    """Read a prompt folder (``prompt/instruct.txt`` plus ``seed/``).

    ``seed`` may be a folder of ``<n>.txt`` / ``<n>_des.txt`` pairs or, for the level task, one
    file (``seed/v0.txt`` or the only ``.txt`` in ``seed/``) of ``example|graded answer`` lines;
    ``level_format=None`` decides by what is there.
    """
    folder = Path(folder)
    instruct = folder / "prompt" / "instruct.txt"
    if not instruct.is_file():
        raise FileNotFoundError(
            f"prompt set {folder} has no prompt/instruct.txt (task description lines, then one "
            "acknowledgement line)"
        )
    lines = [line for line in _read(instruct).splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError(
            f"{instruct} needs at least two lines (task description, acknowledgement), got {len(lines)}"
        )
    task, ack = "\n".join(lines[:-1]), lines[-1]
    seed = folder / "seed"
    examples: list[tuple[str, str]] = []
    files = sorted(seed.glob("*.txt")) if seed.is_dir() else []
    pairs = [f for f in files if "des" not in f.stem]
    if level_format is None:
        level_format = bool(files) and all("|" in line for line in _read(files[0]).splitlines())
        level_format = level_format and not any(
            (seed / f"{f.stem}_des.txt").exists() for f in files
        )
    if level_format:
        source = seed / "v0.txt" if (seed / "v0.txt").is_file() else (files[0] if files else None)
        if source is None:
            raise FileNotFoundError(f"level prompt set {folder} has no seed/*.txt examples file")
        for lineno, line in enumerate(_read(source).splitlines(), 1):
            if not line.strip():
                continue
            if "|" not in line:
                raise ValueError(f"{source}:{lineno}: expected 'example|graded answer'")
            example, answer = line.split("|", 1)
            examples.append((level_query(example.strip()), answer.strip()))
    else:
        for query_file in pairs:
            answer_file = query_file.with_name(f"{query_file.stem}_des.txt")
            if not answer_file.is_file():
                raise FileNotFoundError(
                    f"few-shot example {query_file} has no answer {answer_file.name}"
                )
            examples.append((_read(query_file), _read(answer_file)))
    return PromptSet(task=task, acknowledgement=ack, examples=examples)


def level_query(text: str) -> str:
    """The user turn that asks for one phrase's complexity level."""
    return f"grade description: {text}"


def build_messages(
    prompts: PromptSet,
    query: str,
    *,
    system: str | None = VICUNA_SYSTEM,
    wrap_task: bool = False,
) -> list[Message]:
    """[system] -> user task -> assistant ack -> few-shot pairs -> user query.

    ``wrap_task`` sends the task pair in the level task's "grade description" form, as the released
    level prompts do.
    """
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    task = level_query(prompts.task) if wrap_task else prompts.task
    messages.append({"role": "user", "content": task})
    messages.append({"role": "assistant", "content": prompts.acknowledgement})
    for user, assistant in prompts.examples:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    messages.append({"role": "user", "content": query})
    return messages


def vicuna_v11_prompt(messages: list[Message]) -> str:
    """FastChat's ``vicuna_v1.1`` text: ``system USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT:``."""
    system = VICUNA_SYSTEM
    turns = list(messages)
    if turns and turns[0]["role"] == "system":
        system = turns.pop(0)["content"]
    out = system
    for i, msg in enumerate(turns):
        if msg["role"] == "user":
            out += (" USER: " if i == 0 else "USER: ") + msg["content"] + " ASSISTANT:"
        elif msg["role"] == "assistant":
            out += " " + msg["content"] + "</s>"
        else:
            raise ValueError(f"unexpected role {msg['role']!r} after the system message")
    return out
