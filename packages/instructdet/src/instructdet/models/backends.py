"""Foundation-model backends behind one interface.

- ``LLMBackend.chat(messages, *, seed=None, **generation) -> str``
- ``VLMBackend.chat(image, messages, *, seed=None, **generation) -> str``

``messages`` are ``{"role": "system" | "user" | "assistant", "content": str}`` dicts; ``generation``
takes the :class:`~instructdet.config.GenerationConfig` fields (temperature, top_p,
repetition_penalty, max_new_tokens). Backends that can batch also offer ``chat_batch``.

Kinds (:func:`create_backend`):

- ``template``: offline and deterministic; builds well-formed answers from the request itself (the
  object names and boxes in an LLM query, the red outline in a VLM image). It lets the whole
  pipeline run and be tested without any model; its phrases are simple.
- ``hf``: transformers causal LMs (``AutoModelForCausalLM``) and LLaVA-style VLMs
  (``LlavaForConditionalGeneration`` / ``AutoModelForImageTextToText`` with their processor), by hub
  name or local path. The tokenizer's chat template is used when it has one, else FastChat's
  ``vicuna_v1.1`` format.
- ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (stdlib ``urllib``): key, timeout,
  retries with exponential backoff on 429/5xx and connection errors, a clear error on a malformed
  answer. Images go as base64 PNG data URLs.
- ``callable``: any Python function with the same signature.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from instructdet.pipeline.global_stage import STOP_WORDS
from instructdet.pipeline.prompts import Message, vicuna_v11_prompt

__all__ = [
    "LLMBackend",
    "VLMBackend",
    "TemplateLLM",
    "TemplateVLM",
    "CallableLLM",
    "CallableVLM",
    "OpenAIBackend",
    "OpenAIVLMBackend",
    "HFLLMBackend",
    "HFVLMBackend",
    "BackendError",
    "create_backend",
    "BACKEND_KINDS",
]

logger = logging.getLogger(__name__)

BACKEND_KINDS = ("template", "hf", "openai", "callable")


class BackendError(RuntimeError):
    """A backend could not produce an answer (bad response, exhausted retries)."""


class LLMBackend(Protocol):
    def chat(
        self, messages: list[Message], *, seed: int | None = None, **generation: Any
    ) -> str: ...


class VLMBackend(Protocol):
    def chat(
        self,
        image: Image.Image,
        messages: list[Message],
        *,
        seed: int | None = None,
        **generation: Any,
    ) -> str: ...


# ----------------------------------------------------------------------------------------------
# template backends (offline, deterministic)

_QUERY_LINE = re.compile(r"^(.+): \[([-\d.e]+), ([-\d.e]+), ([-\d.e]+), ([-\d.e]+)\]$")
_STOP = STOP_WORDS | set(
    [
        "one",
        "object",
        "objects",
        "image",
        "picture",
        "photo",
        "side",
        "left",
        "right",
        "middle",
        "top",
        "bottom",
    ]
)


def _last_user(messages: Sequence[Message]) -> str:
    for msg in reversed(messages):
        if msg["role"] == "user":
            return msg["content"]
    raise ValueError("messages contain no user turn")


def _strip_article(text: str) -> str:
    words = text.strip().split()
    if words and words[0].lower() in {"a", "an", "the"}:
        words = words[1:]
    return " ".join(words) or text.strip()


def _where(cx: float, cy: float) -> tuple[str, str]:
    horiz = "left" if cx < 0.36 else ("right" if cx > 0.64 else "middle")
    vert = "top" if cy < 0.36 else ("bottom" if cy > 0.64 else "centre")
    return horiz, vert


class TemplateLLM:
    """Answers the three LLM tasks of the pipeline from the query alone."""

    def chat(self, messages: list[Message], *, seed: int | None = None, **generation: Any) -> str:
        query = _last_user(messages)
        if query.startswith("grade description: "):
            return self._grade(query[len("grade description: ") :])
        if "## object" in query:
            return self._summary(query)
        return self._phrases(query)

    def chat_batch(
        self, batch: Sequence[list[Message]], *, seed: int | None = None, **generation: Any
    ) -> list[str]:
        return [self.chat(m, seed=seed, **generation) for m in batch]

    @staticmethod
    def _phrases(query: str) -> str:
        objects = []
        for line in query.splitlines():
            match = _QUERY_LINE.match(line.strip())
            if match:
                names = match.group(1)
                x1, y1, x2, y2 = (float(match.group(i)) for i in range(2, 6))
                objects.append((names, x1, y1, x2, y2))
        blocks = []
        for i, (names, x1, y1, x2, y2) in enumerate(objects):
            name = _strip_article(min(names.split("/"), key=len))
            cx, cy, area = (x1 + x2) / 2, (y1 + y2) / 2, max(0.0, (x2 - x1) * (y2 - y1))
            horiz, vert = _where(cx, cy)
            own = [f"{name} in the middle" if horiz == "middle" else f"{name} on the {horiz}"]
            own.append(
                f"{name} at the {vert} of the picture"
                if vert != "centre"
                else f"{name} near the centre"
            )
            if area > 0.3:
                own.append(f"large {name}")
            elif area < 0.03:
                own.append(f"small {name}")
            rel = []
            others = [o for j, o in enumerate(objects) if j != i]
            if others:

                def dist(
                    o: tuple[str, float, float, float, float], cx: float = cx, cy: float = cy
                ) -> float:
                    return ((o[1] + o[3]) / 2 - cx) ** 2 + ((o[2] + o[4]) / 2 - cy) ** 2

                near = min(others, key=dist)
                other = _strip_article(min(near[0].split("/"), key=len))
                dx, dy = (near[1] + near[3]) / 2 - cx, (near[2] + near[4]) / 2 - cy
                if abs(dx) >= abs(dy):
                    word = "left of" if dx > 0 else "right of"
                else:
                    word = "above" if dy > 0 else "below"
                rel.append(f"{name} {word} the {other}")
                rel.append(f"{name} next to the {other}")
            else:
                rel.append(f"{name} on its own")
            blocks.append(f"[{names}]\n(1) {', '.join(own)}\n(2) {', '.join(rel)}")
        return "\n".join(blocks)

    @staticmethod
    def _summary(query: str) -> str:
        word_sets = []
        for line in query.splitlines():
            if line.startswith("## object"):
                text = line.split(":", 1)[1] if ":" in line else ""
                words = {
                    w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2
                }
                word_sets.append(words)
        common = sorted(set.intersection(*word_sets)) if word_sets else []
        body = "; ".join(common[:3]) if common else "none"
        return f"Summary of common properties of given objects:\n## {body}; "

    @staticmethod
    def _grade(text: str) -> str:
        words = text.split()
        relation = re.search(
            r"\b(of|next to|behind|under|above|below|near|beside|holding|between|on top)\b", text
        )
        if len(words) <= 2:
            level, why = 0, "little more than the name of the object"
        elif len(words) > 12:
            level, why = 3, "a long description with several objects"
        elif relation:
            level, why = 2, "the object is found through another object"
        else:
            level, why = 1, "simple properties of the object itself"
        return f"My grading for description {text}: {why}, so the grade is: level {level}."


_PALETTE = {
    "red": (200, 40, 40),
    "orange": (230, 130, 40),
    "yellow": (230, 210, 60),
    "green": (60, 160, 70),
    "blue": (50, 80, 200),
    "purple": (130, 60, 160),
    "brown": (120, 80, 50),
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
}


def _colour_name(rgb: np.ndarray) -> str:
    return min(_PALETTE, key=lambda k: float(((np.asarray(_PALETTE[k]) - rgb) ** 2).sum()))


class TemplateVLM:
    """Captions from the hint list; describes a red-outlined region by its colour and position."""

    def chat(
        self,
        image: Image.Image,
        messages: list[Message],
        *,
        seed: int | None = None,
        **generation: Any,
    ) -> str:
        request = _last_user(messages)
        if "red box" not in request.lower():
            hints = (
                request.split("including objects: ", 1)[1]
                if "including objects: " in request
                else ""
            )
            colour = _colour_name(
                np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
            )
            if hints:
                return f"A {colour}-toned photograph showing {hints}."
            return f"A {colour}-toned photograph."
        arr = np.asarray(image.convert("RGB"))
        mask = (arr[..., 0] == 255) & (arr[..., 1] == 0) & (arr[..., 2] == 0)
        if not mask.any():
            return "An object in the red box."
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        inner = arr[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
        inner = inner[~((inner[:, 0] == 255) & (inner[:, 1] == 0) & (inner[:, 2] == 0))]
        colour = _colour_name(inner.astype(np.float64).mean(0)) if len(inner) else "red"
        h, w = arr.shape[:2]
        horiz, vert = _where((x0 + x1) / 2 / w, (y0 + y1) / 2 / h)
        place = "in the middle" if horiz == "middle" else f"on the {horiz}"
        where = "" if vert == "centre" else f" near the {vert}"
        return f"The red box shows a {colour} object {place}{where} of the picture. It is clearly visible."


class CallableLLM:
    """Wraps ``fn(messages, **generation) -> str``."""

    def __init__(self, fn: Callable[..., str]) -> None:
        self.fn = fn

    def chat(self, messages: list[Message], *, seed: int | None = None, **generation: Any) -> str:
        return str(self.fn(messages, **generation))


class CallableVLM:
    """Wraps ``fn(image, messages, **generation) -> str``."""

    def __init__(self, fn: Callable[..., str]) -> None:
        self.fn = fn

    def chat(
        self,
        image: Image.Image,
        messages: list[Message],
        *,
        seed: int | None = None,
        **generation: Any,
    ) -> str:
        return str(self.fn(image, messages, **generation))


# ----------------------------------------------------------------------------------------------
# OpenAI-compatible endpoints


class OpenAIBackend:
    """``POST {base_url}/chat/completions`` with ``model, messages, temperature, top_p, max_tokens``.

    Args:
        model: the endpoint's model name.
        base_url: e.g. ``https://api.openai.com/v1`` or a local server's ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token; defaults to the ``OPENAI_API_KEY`` environment variable.
        timeout: seconds per request.
        max_retries: further attempts after a 429, a 5xx or a connection error.
        backoff: first wait in seconds, doubled after each failure.
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff

    def _payload(
        self, messages: list[dict[str, Any]], generation: dict[str, Any]
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if "temperature" in generation:
            payload["temperature"] = float(generation["temperature"])
        if "top_p" in generation:
            payload["top_p"] = float(generation["top_p"])
        if "max_new_tokens" in generation:
            payload["max_tokens"] = int(generation["max_new_tokens"])
        return payload

    def _post(self, payload: dict[str, Any]) -> str:
        url = f"{self.base_url}/chat/completions"
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        wait = self.backoff
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as err:
                retryable = err.code == 429 or err.code >= 500
                if not retryable or attempt == self.max_retries:
                    detail = err.read()[:200].decode("utf-8", "replace")
                    raise BackendError(f"{url} answered HTTP {err.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.max_retries:
                    raise BackendError(
                        f"{url} unreachable after {self.max_retries + 1} attempts: {err}"
                    ) from None
            logger.warning(
                "request to %s failed (attempt %d), retrying in %.1fs", url, attempt + 1, wait
            )
            time.sleep(wait)
            wait *= 2
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                f"{url} returned a response without choices[0].message.content: {raw[:200]!r}"
            ) from None
        if not isinstance(content, str):
            raise BackendError(f"{url} returned non-text content: {content!r:.200}")
        return content

    def chat(self, messages: list[Message], *, seed: int | None = None, **generation: Any) -> str:
        return self._post(self._payload(list(messages), generation))


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenAIVLMBackend:
    """The same endpoint as :class:`OpenAIBackend` (same arguments), with the image attached to the
    first user turn as a base64 PNG data URL."""

    def __init__(
        self, model: str, base_url: str = "https://api.openai.com/v1", **kwargs: Any
    ) -> None:
        self.client = OpenAIBackend(model, base_url, **kwargs)

    def chat(
        self,
        image: Image.Image,
        messages: list[Message],
        *,
        seed: int | None = None,
        **generation: Any,
    ) -> str:
        out: list[dict[str, Any]] = []
        attached = False
        for msg in messages:
            if msg["role"] == "user" and not attached:
                content = [
                    {"type": "text", "text": msg["content"]},
                    {"type": "image_url", "image_url": {"url": _data_url(image)}},
                ]
                out.append({"role": "user", "content": content})
                attached = True
            else:
                out.append(dict(msg))
        return self.client._post(self.client._payload(out, generation))


# ----------------------------------------------------------------------------------------------
# transformers


def _hf_generate_kwargs(generation: dict[str, Any]) -> dict[str, Any]:
    temperature = float(generation.get("temperature", 0.0))
    kwargs: dict[str, Any] = {
        "max_new_tokens": int(generation.get("max_new_tokens", 64)),
        "num_beams": 1,
        "repetition_penalty": float(generation.get("repetition_penalty", 1.0)),
    }
    if temperature >= 1e-5:
        kwargs.update(
            do_sample=True, temperature=temperature, top_p=float(generation.get("top_p", 1.0))
        )
    else:
        kwargs["do_sample"] = False
    return kwargs


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'hf' backend needs transformers: pip install 'instructdet[hf]'"
        ) from err
    return transformers


class HFLLMBackend:
    """A transformers causal LM with batched, left-padded generation."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        if getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: str = "cpu", dtype: str = "auto"
    ) -> HFLLMBackend:
        transformers = _import_transformers()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(name_or_path))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(name_or_path), torch_dtype=dtype
        )
        return cls(model, tokenizer, device=device)

    def prompt_text(self, messages: list[Message]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            )
        return vicuna_v11_prompt(messages)

    def chat(self, messages: list[Message], *, seed: int | None = None, **generation: Any) -> str:
        return self.chat_batch([messages], seed=seed, **generation)[0]

    def chat_batch(
        self, batch: Sequence[list[Message]], *, seed: int | None = None, **generation: Any
    ) -> list[str]:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        texts = [self.prompt_text(m) for m in batch]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        kwargs = _hf_generate_kwargs(generation)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


class HFVLMBackend:
    """A LLaVA-style transformers VLM with its processor."""

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = device

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: str = "cpu", dtype: str = "auto"
    ) -> HFVLMBackend:
        transformers = _import_transformers()
        processor = transformers.AutoProcessor.from_pretrained(str(name_or_path))
        loader = (
            getattr(transformers, "AutoModelForImageTextToText", None)
            or transformers.LlavaForConditionalGeneration
        )
        model = loader.from_pretrained(str(name_or_path), torch_dtype=dtype)
        return cls(model, processor, device=device)

    def prompt_text(self, messages: list[Message]) -> str:
        if getattr(self.processor, "chat_template", None):
            conv = []
            first = True
            for msg in messages:
                if msg["role"] == "user" and first:
                    conv.append(
                        {
                            "role": "user",
                            "content": [
                                {"type": "image"},
                                {"type": "text", "text": msg["content"]},
                            ],
                        }
                    )
                    first = False
                else:
                    conv.append(
                        {"role": msg["role"], "content": [{"type": "text", "text": msg["content"]}]}
                    )
            return str(self.processor.apply_chat_template(conv, add_generation_prompt=True))
        # LLaVA v1 conversation format
        out = ""
        first = True
        for msg in messages:
            if msg["role"] == "system":
                out += msg["content"] + " "
            elif msg["role"] == "user":
                text = ("<image>\n" + msg["content"]) if first else msg["content"]
                out += f"USER: {text} ASSISTANT:"
                first = False
            else:
                out += f" {msg['content']}</s>"
        return out

    def chat(
        self,
        image: Image.Image,
        messages: list[Message],
        *,
        seed: int | None = None,
        **generation: Any,
    ) -> str:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        prompt = self.prompt_text(messages)
        inputs = self.processor(images=image.convert("RGB"), text=prompt, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        kwargs = _hf_generate_kwargs(generation)
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return str(self.processor.batch_decode(new, skip_special_tokens=True)[0]).strip()


def create_backend(kind: str, role: str = "llm", **kwargs: Any) -> Any:
    """Build a backend: ``kind`` in template/hf/openai/callable, ``role`` llm or vlm.

    ``hf`` takes ``model`` (hub name or path) and optional ``device``/``dtype``; ``openai`` takes
    ``model``, ``base_url``, ``api_key``, ``timeout``, ``max_retries``; ``callable`` takes ``fn``.
    """
    if role not in ("llm", "vlm"):
        raise ValueError(f"role must be 'llm' or 'vlm', got {role!r}")
    if kind == "template":
        if kwargs:
            raise TypeError(f"the template backend takes no options, got {sorted(kwargs)}")
        return TemplateLLM() if role == "llm" else TemplateVLM()
    if kind == "callable":
        fn = kwargs.pop("fn", None)
        if fn is None or kwargs:
            raise TypeError("the callable backend takes exactly one option, fn")
        return CallableLLM(fn) if role == "llm" else CallableVLM(fn)
    if kind == "openai":
        if "model" not in kwargs:
            raise TypeError("the openai backend needs model=<endpoint model name>")
        return OpenAIBackend(**kwargs) if role == "llm" else OpenAIVLMBackend(**kwargs)
    if kind == "hf":
        if "model" not in kwargs:
            raise TypeError("the hf backend needs model=<hub name or local path>")
        name = kwargs.pop("model")
        cls = HFLLMBackend if role == "llm" else HFVLMBackend
        return cls.from_pretrained(name, **kwargs)
    raise ValueError(f"unknown backend kind {kind!r}; valid kinds are {list(BACKEND_KINDS)}")
