import json

import pytest
import torch
from skvg.config import KeViLIConfig, LeViLMConfig, TrainConfig
from skvg.data.annotations import load_annotations
from skvg.data.datasets import GroundingDataset, collate
from skvg.data.synthetic import NAMES, SceneConfig, vocabulary, write_synthetic_dataset
from skvg.models.kevili import KeViLI
from skvg.models.levilm import LeViLM
from skvg.models.text import TextEncoder, build_word_tokenizer, tiny_bert_config
from skvg.train import KeViLITask, LeViLMTask

from papers_shared.trainer import RunFolderError, Trainer, TrainerConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_synthetic_dataset(
        tmp_path_factory.mktemp("skvg"),
        train=8,
        val=4,
        test=4,
        seed=0,
        scene=SceneConfig(96, 3, 32),
    )
    tok = build_word_tokenizer(vocabulary(), root / "tok")
    return root, load_annotations(root), json.loads((root / "proposals.json").read_text()), tok


def _loader(ds):
    return lambda: torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, collate_fn=collate)


def test_kevili_task_trains_through_the_shared_trainer(data, tmp_path):
    root, ann, _, tok = data
    cfg = KeViLIConfig(
        backbone="tiny",
        image_size=96,
        hidden_dim=32,
        nhead=4,
        dim_feedforward=64,
        visual_layers=1,
        vl_layers=1,
        ke_layers=1,
        max_query_len=8,
        max_knowledge_len=48,
    )
    kw = {"size": 96, "max_query_len": 8, "max_knowledge_len": 48}
    train = GroundingDataset(ann["train"], root / "images", tok, **kw)
    val = GroundingDataset(ann["val"], root / "images", tok, **kw)

    def build():
        torch.manual_seed(0)
        return KeViLI(
            cfg,
            TextEncoder.from_config(
                tiny_bert_config(vocab_size=len(tok), hidden_size=16, num_layers=1, num_heads=2)
            ),
        )

    task = KeViLITask(
        cfg,
        TrainConfig(lr=1e-3, lr_pretrained=1e-3, batch_size=4),
        build,
        _loader(train),
        _loader(val),
        ann["val"],
    )
    out = tmp_path / "run"
    result = Trainer(
        task, TrainerConfig(output_dir=out, epochs=2, device="cpu", precision="fp32")
    ).fit()
    assert (out / "model.safetensors").exists() and len(result.history) == 2
    assert 0.0 <= result.history[-1]["val_acc@0.5"] <= 1.0
    groups = task.build_optimizer(build())
    assert [g["lr"] for g in groups.param_groups] == [1e-3, 1e-3]
    with pytest.raises(RunFolderError):
        Trainer(task, TrainerConfig(output_dir=out, epochs=2, device="cpu")).fit()


def test_levilm_task_step_and_eval(data, tmp_path):
    root, ann, props, tok = data
    cfg = LeViLMConfig(
        backbone="tiny", image_size=96, embed_dim=16, region_hidden=32, max_text_len=64
    )
    kw = {"size": 96, "mode": "levilm", "max_text_len": 64, "names": NAMES}
    train = GroundingDataset(ann["train"], root / "images", tok, proposals=props["train"], **kw)
    val = GroundingDataset(ann["val"], root / "images", tok, proposals=props["val"], **kw)

    def build():
        torch.manual_seed(0)
        return LeViLM(
            cfg,
            TextEncoder.from_config(
                tiny_bert_config(vocab_size=len(tok), hidden_size=16, num_layers=1, num_heads=2)
            ),
        )

    task = LeViLMTask(
        cfg, TrainConfig(batch_size=4), build, _loader(train), _loader(val), ann["val"]
    )
    model = build()
    batch = next(iter(_loader(train)()))
    out = task.training_step(model, batch, 0)
    assert out.loss.requires_grad and torch.isfinite(out.loss)
    # predictions are proposals mapped back to original pixels; accuracy counts the ones on the target
    from skvg.boxes import release_to_xyxy
    from skvg.train import accuracy, predict_boxes

    preds = predict_boxes(model.eval(), _loader(val)(), "levilm")
    assert sorted(preds) == list(range(len(ann["val"])))
    hits = 0
    for i, box in preds.items():
        assert any(box == pytest.approx(p, abs=1e-4) for p in props["val"][i])
        hits += box == pytest.approx(release_to_xyxy(ann["val"][i]["bbox"]), abs=1e-4)
    assert accuracy(preds, ann["val"]) == hits / len(preds)
    assert task.evaluate(model)["val_acc@0.5"] == hits / len(preds)
