import json

import pytest
import torch
from skvg.config import KeViLIConfig, LeViLMConfig
from skvg.convert import load_transvg_checkpoint
from skvg.models.kevili import KeViLI, TransVG
from skvg.models.levilm import LeViLM
from skvg.models.text import TextEncoder, tiny_bert_config


def _cfg(**kw):
    base = dict(
        backbone="tiny",
        image_size=64,
        hidden_dim=32,
        nhead=4,
        dim_feedforward=64,
        visual_layers=1,
        vl_layers=1,
        ke_layers=1,
        max_query_len=6,
        max_knowledge_len=10,
        dropout=0.0,
    )
    base.update(kw)
    return KeViLIConfig(**base)


def _text():
    torch.manual_seed(0)
    return TextEncoder.from_config(
        tiny_bert_config(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2)
    )


def _batch(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(b, 3, 64, 64, generator=g),
        "pixel_mask": torch.zeros(b, 64, 64, dtype=torch.bool),
        "query_ids": torch.randint(5, 50, (b, 6), generator=g),
        "query_mask": torch.tensor([[1, 1, 1, 0, 0, 0]] * b),
        "know_ids": torch.randint(5, 50, (b, 10), generator=g),
        "know_mask": torch.tensor([[1] * 6 + [0] * 4] * b),
    }


def test_kevili_shapes_gradients_and_padding():
    torch.manual_seed(0)
    model = KeViLI(_cfg(), _text()).eval()
    batch = _batch()
    out = model(**batch)
    assert out.shape == (2, 4) and bool(((out >= 0) & (out <= 1)).all())
    model.train()
    model(**batch).sum().backward()
    for name, p in model.named_parameters():
        if name.startswith(("ke_encoder", "know_proj", "ke_pos_embed")):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    changed = dict(batch)
    changed["know_ids"] = batch["know_ids"].clone()
    changed["know_ids"][:, 6:] = 3  # padded knowledge tokens
    assert torch.allclose(model(**batch), model(**changed), atol=1e-6)
    changed["know_ids"][:, 2] = 7  # a real knowledge token
    assert not torch.allclose(model(**batch), model(**changed), atol=1e-6)


def test_cross_fusion_and_bad_input():
    model = KeViLI(_cfg(knowledge_fusion="cross", ke_layers=2), _text()).eval()
    assert model(**_batch()).shape == (2, 4)
    with pytest.raises(ValueError, match="pixel_values"):
        model(**{**_batch(), "pixel_values": torch.zeros(2, 3, 32, 32)})
    with pytest.raises(ValueError, match="know_ids"):
        model(**{k: v for k, v in _batch().items() if not k.startswith("know")})
    with pytest.raises(ValueError, match="knowledge_fusion"):
        _cfg(knowledge_fusion="sum")


def test_zero_ke_layers_is_transvg_and_loads_its_checkpoint(tmp_path):
    import argparse

    torch.manual_seed(1)
    reference = TransVG(_cfg(ke_layers=0), _text()).eval()
    keys = set(reference.state_dict())
    assert "visumodel.backbone.0.body.layers.0.weight" in keys
    assert "textmodel.bert.embeddings.word_embeddings.weight" in keys
    assert {"vl_pos_embed.weight", "reg_token.weight", "bbox_embed.layers.2.weight"} <= keys
    assert "vl_transformer.encoder.layers.0.self_attn.in_proj_weight" in keys
    plain = KeViLI(_cfg(ke_layers=0), _text()).eval()
    plain.load_state_dict(reference.state_dict())
    batch = _batch()
    torch.testing.assert_close(plain(**batch), reference(**batch), atol=1e-6, rtol=0)
    # a file written like TransVG's training script
    path = tmp_path / "checkpoint.pth"
    torch.save(
        {"model": reference.state_dict(), "epoch": 89, "args": argparse.Namespace(lr=1e-4)}, path
    )
    with_ke = KeViLI(_cfg(ke_layers=1), _text())
    missing = load_transvg_checkpoint(with_ke, path)
    assert missing and all(k.startswith(("ke_", "know_proj")) for k in missing)
    torch.save({"model": {"something.else": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a TransVG checkpoint"):
        load_transvg_checkpoint(with_ke, tmp_path / "other.pth")


def test_transvg_r50_parameter_count():
    from transformers import BertConfig

    from papers_shared.counting import count_parameters

    with torch.device("meta"):
        model = KeViLI(
            KeViLIConfig(backbone="resnet50", ke_layers=6, max_query_len=20),
            TextEncoder.from_config(BertConfig()),
        )
    assert count_parameters(model).total == 157_968_324
    frozen = [
        n for n, p in model.named_parameters() if n.startswith("visumodel.backbone.0.body.layer1")
    ]
    assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)


def _levilm_batch(num=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor(
        [[4, 4, 24, 24], [36, 4, 56, 24], [4, 36, 24, 56], [36, 36, 56, 56]], dtype=torch.float
    )[:num]
    return {
        "pixel_values": torch.randn(1, 3, 64, 64, generator=g),
        "boxes": boxes.unsqueeze(0),
        "text_ids": torch.randint(5, 50, (1, 12), generator=g),
        "text_mask": torch.ones(1, 12, dtype=torch.long),
        "entity_mask": torch.tensor([[False, True, True] + [False] * 9]),
    }


def test_levilm_permutation_equivariance_and_training():
    torch.manual_seed(0)
    model = LeViLM(
        LeViLMConfig(backbone="tiny", image_size=64, embed_dim=16, region_hidden=32), _text()
    ).eval()
    batch = _levilm_batch()
    scores = model(**batch)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = model(**{**batch, "boxes": batch["boxes"][:, perm]})
    torch.testing.assert_close(permuted, scores[:, perm], atol=1e-5, rtol=0)
    assert float(model.logit_scale.exp()) == pytest.approx(1 / 0.07, rel=1e-5)

    # 8 samples, proposals = GT + 3 others; CE training ranks the GT first
    from skvg.losses import matching_loss

    g = torch.Generator().manual_seed(3)
    pixels = torch.randn(8, 3, 64, 64, generator=g)
    gts = torch.arange(8) % 4
    for i, gt in enumerate(gts.tolist()):
        x1, y1, x2, y2 = (int(v) for v in batch["boxes"][0, gt])
        pixels[i, :, y1:y2, x1:x2] += 3.0  # the target region stands out
    many = {
        "pixel_values": pixels,
        "boxes": batch["boxes"].expand(8, -1, -1),
        "text_ids": batch["text_ids"].expand(8, -1),
        "text_mask": batch["text_mask"].expand(8, -1),
        "entity_mask": batch["entity_mask"].expand(8, -1),
    }
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(50):
        loss = matching_loss(model(**many), gts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ranked = (model(**many).argmax(1) == gts).tolist()
    assert sum(ranked) / len(ranked) >= 0.9


def test_config_round_trip_and_unknown_keys():
    cfg = _cfg()
    assert KeViLIConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown KeViLIConfig keys"):
        KeViLIConfig.from_dict({"ke_layer": 3})
    with pytest.raises(ValueError, match="multiple of 32"):
        KeViLIConfig(image_size=100)
