import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from instructdet.models.backends import (
    BackendError,
    OpenAIBackend,
    OpenAIVLMBackend,
    TemplateLLM,
    TemplateVLM,
    create_backend,
)
from instructdet.pipeline.global_stage import parse_llm_answer
from instructdet.pipeline.local_stage import draw_box
from PIL import Image


def test_template_llm_is_deterministic_and_parsable():
    query = "A photo.\n\nred car/car: [0.0, 0.0, 0.3, 0.3]\ntree: [0.6, 0.6, 0.9, 0.9]"
    llm = TemplateLLM()
    answer = llm.chat([{"role": "user", "content": query}], seed=1)
    assert answer == llm.chat([{"role": "user", "content": query}], seed=2)
    phrases = parse_llm_answer(answer, [["red car", "car"], ["tree"]])
    assert all(phrases) and "car on the left" in phrases[0]
    grade = llm.chat([{"role": "user", "content": "grade description: cup next to the laptop"}])
    assert grade.endswith(": level 2.")


def test_template_vlm_reads_the_red_box():
    image = Image.new("RGB", (100, 100), (40, 60, 200))
    text = TemplateVLM().chat(
        draw_box(image, [5, 5, 30, 30]),
        [{"role": "user", "content": "Describe the object in the red box."}],
    )
    assert "blue" in text and "left" in text and "red box" in text


def test_create_backend_errors():
    with pytest.raises(ValueError, match="valid kinds"):
        create_backend("nope")
    with pytest.raises(TypeError, match="model"):
        create_backend("openai")
    assert (
        create_backend("callable", fn=lambda m, **g: "hi").chat([{"role": "user", "content": "x"}])
        == "hi"
    )


class _Stub(BaseHTTPRequestHandler):
    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append((self.path, self.headers.get("Authorization"), body))
        status, payload = _Stub.script.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    server = HTTPServer(("127.0.0.1", 0), _Stub)  # an ephemeral port: no clashes between runs
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stub.seen.clear()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def _ok(text):
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})


def test_openai_backend_payload_retry_and_errors(stub_server):
    _Stub.script = [(500, "{}"), _ok("fine")]
    llm = OpenAIBackend("m1", stub_server, api_key="k", max_retries=2, backoff=0.01)
    out = llm.chat(
        [{"role": "user", "content": "hello"}], temperature=0.7, top_p=1.0, max_new_tokens=12
    )
    assert out == "fine"
    path, auth, body = _Stub.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 12,
    }
    _Stub.script = [(200, json.dumps({"nothing": 1}))]
    with pytest.raises(BackendError, match="choices"):
        llm.chat([{"role": "user", "content": "x"}])
    _Stub.script = [(400, '{"error": "bad"}')]
    with pytest.raises(BackendError, match="HTTP 400"):
        llm.chat([{"role": "user", "content": "x"}])
    _Stub.script = [(503, "{}"), (503, "{}"), (503, "{}")]
    with pytest.raises(BackendError, match="503"):
        llm.chat([{"role": "user", "content": "x"}])


def test_openai_vlm_sends_image_data_url(stub_server):
    _Stub.script = [_ok("a cat")]
    vlm = OpenAIVLMBackend("v", stub_server, api_key="", backoff=0.01)
    assert vlm.chat(Image.new("RGB", (4, 4)), [{"role": "user", "content": "what?"}]) == "a cat"
    content = _Stub.seen[-1][2]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def _tiny_tokenizer(transformers, extra=()):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = (
        ["<unk>", "<pad>", "<s>", "</s>", *extra]
        + [f"w{i}" for i in range(40)]
        + [
            "USER:",
            "ASSISTANT:",
            "hello",
            "world",
            "the",
            "red",
            "box",
            "describe",
            "object",
            "in",
            "?",
            ".",
        ]
    )
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    if extra:
        fast.add_tokens(list(extra), special_tokens=True)  # so "<image><image>" splits
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    return fast, len(words)


def test_hf_llm_backend_batched_equals_single():
    transformers = pytest.importorskip("transformers")
    import torch
    from instructdet.models.backends import HFLLMBackend

    tokenizer, vocab = _tiny_tokenizer(transformers)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    backend = HFLLMBackend(transformers.LlamaForCausalLM(config), tokenizer)
    a = [{"role": "user", "content": "hello world"}]
    b = [{"role": "user", "content": "hello the red box hello world hello"}]
    gen = {"temperature": 0.0, "max_new_tokens": 4}
    batched = backend.chat_batch([a, b], **gen)
    assert batched == [backend.chat(a, **gen), backend.chat(b, **gen)]
    assert all(isinstance(t, str) for t in batched)
    sampled = backend.chat(a, seed=3, temperature=0.7, max_new_tokens=4)
    assert sampled == backend.chat(a, seed=3, temperature=0.7, max_new_tokens=4)


def test_hf_vlm_backend_tiny_llava():
    transformers = pytest.importorskip("transformers")
    import torch
    from instructdet.models.backends import HFVLMBackend

    tokenizer, vocab = _tiny_tokenizer(transformers, extra=("<image>",))
    tokenizer.chat_template = None
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    vision = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    text = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config)
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    backend = HFVLMBackend(model, processor)
    image = draw_box(Image.new("RGB", (64, 48), (10, 200, 10)), [4, 4, 20, 20])
    prompt = backend.prompt_text(
        [{"role": "user", "content": "describe the object in the red box ?"}]
    )
    assert prompt == "USER: <image>\ndescribe the object in the red box ? ASSISTANT:"
    out = backend.chat(
        image,
        [{"role": "user", "content": "describe the object in the red box ?"}],
        temperature=0.0,
        max_new_tokens=3,
    )
    assert isinstance(out, str)
