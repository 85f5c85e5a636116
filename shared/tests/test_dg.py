import json

import numpy as np
import pytest
import torch
from PIL import Image

from papers_shared.dg import (
    ERM,
    PACS,
    DebugDomains,
    HParam,
    InfiniteDataLoader,
    ResNetFeaturizer,
    TrainConfig,
    hparam_space,
    load_algorithm,
    load_records,
    make_jobs,
    resolve_hparams,
    results_table,
    run_jobs,
    select_run,
    split_dataset,
    train,
)
from papers_shared.dg.hparams import random_hparams


def test_default_and_random_hparams():
    space = hparam_space(ERM, "PACS")
    assert resolve_hparams(space, 0, 0)["lr"] == 5e-5
    drawn = resolve_hparams(space, 1, 0)
    assert drawn == resolve_hparams(space, 1, 0) and 1e-5 <= drawn["lr"] <= 10**-3.5
    assert resolve_hparams(hparam_space(ERM, "RotatedDigits"), 0, 0)["lr"] == 1e-3


def test_adding_an_hparam_leaves_other_draws_unchanged():
    space = hparam_space(ERM, "PACS")
    bigger = {**space, "new": HParam(1, lambda r: r.uniform())}
    a, b = random_hparams(space, 7), random_hparams(bigger, 7)
    assert all(a[k] == b[k] for k in a)


def test_hparam_overrides_json_and_typos():
    space = hparam_space(ERM, "PACS")
    assert resolve_hparams(space, 0, 0, '{"lr": 0.1}')["lr"] == 0.1
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        resolve_hparams(space, 0, 0, {"lr_typo": 1})
    with pytest.raises(ValueError, match="JSON"):
        resolve_hparams(space, 0, 0, "{lr: 1")


def test_split_dataset_is_seeded_and_disjoint():
    data = list(range(10))
    out, in_ = split_dataset(data, 3, seed=5)
    out2, _ = split_dataset(data, 3, seed=5)
    assert out.keys == out2.keys and len(in_) == 7 and not set(out.keys) & set(in_.keys)
    keys = list(range(10))
    np.random.RandomState(5).shuffle(keys)
    assert out.keys == keys[:3]


def test_infinite_loader_never_stops():
    data = torch.utils.data.TensorDataset(torch.arange(5).float(), torch.zeros(5))
    loader = iter(InfiniteDataLoader(data, None, batch_size=4))
    batches = [next(loader) for _ in range(7)]
    assert all(b[0].shape == (4,) for b in batches)


def test_erm_update_lowers_loss():
    torch.manual_seed(0)
    data = DebugDomains()
    hparams = resolve_hparams(hparam_space(ERM, "DebugDomains"), 0, 0, {"cnn_width": 16})
    algorithm = ERM(data.input_shape, data.num_classes, 2, hparams)
    batches = []
    for dataset in data.datasets[:2]:  # a learnable rule: class 1 images are smoothed noise
        x = dataset.tensors[0].clone()
        y = torch.arange(len(x)) % 2
        x[y == 1] = torch.nn.functional.avg_pool2d(x[y == 1], 3, 1, 1)
        batches.append((x, y))
    first = algorithm.update(batches)["loss"]
    for _ in range(40):
        last = algorithm.update(batches)["loss"]
    assert last < first * 0.5


def test_resnet_featurizer_keeps_batchnorm_frozen():
    featurizer = ResNetFeaturizer((3, 32, 32), {"resnet18": True, "resnet_pretrained": False})
    featurizer.train()
    bn = featurizer.network.bn1
    before = bn.running_mean.clone()
    featurizer(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert featurizer.n_outputs == 512 and featurizer(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    two_channel = ResNetFeaturizer((2, 32, 32), {"resnet18": True, "resnet_pretrained": False})
    assert two_channel(torch.randn(1, 2, 32, 32)).shape == (1, 512)


def make_pacs(root, classes=("dog", "horse"), domains=PACS.ENVIRONMENTS, per_class=2):
    for domain in domains:
        for cls in classes:
            folder = root / "PACS" / domain / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20, 16), (i * 40, 100, 200)).save(folder / f"{i}.png")


def test_folder_dataset_reads_domainbed_layout(tmp_path):
    make_pacs(tmp_path)
    data = PACS(tmp_path, test_envs=[0], hparams={"data_augmentation": True})
    assert len(data) == 4 and data.num_classes == 2 and data.classes == ["dog", "horse"]
    x, y = data[0][0]
    assert x.shape == (3, 224, 224) and y == 0


def test_folder_dataset_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="PACS folder not found"):
        PACS(tmp_path, [0], {})
    make_pacs(tmp_path, domains=("art_painting", "photo"))
    with pytest.raises(FileNotFoundError, match="cartoon"):
        PACS(tmp_path, [0], {})


def test_folder_dataset_rejects_mismatched_classes(tmp_path):
    make_pacs(tmp_path)
    (tmp_path / "PACS" / "sketch" / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "PACS" / "sketch" / "cat" / "0.png")
    with pytest.raises(ValueError, match="classes"):
        PACS(tmp_path, [0], {})


def test_train_writes_domainbed_outputs_and_reloads(tmp_path):
    cfg = TrainConfig(
        dataset="DebugDomains",
        test_envs=[0],
        steps=3,
        checkpoint_freq=2,
        output_dir=str(tmp_path / "run"),
        hparams={"cnn_width": 16},
        progress=False,
    )
    records = train(cfg)
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 2] == [r["step"] for r in records]
    assert {"env0_in_acc", "env2_out_acc", "loss", "hparams", "args"} <= set(records[0])
    assert (tmp_path / "run" / "done").exists()
    algorithm = load_algorithm(tmp_path / "run" / "model.pkl")
    assert isinstance(algorithm, ERM)
    assert algorithm.predict(torch.randn(2, 3, 28, 28)).shape == (2, 2)


def test_sweep_shards_and_resumes(tmp_path):
    jobs = make_jobs(
        algorithms=["ERM"],
        datasets=["DebugDomains"],
        data_dir=None,
        output_dir=tmp_path,
        n_hparams=2,
        n_trials=1,
        steps=2,
        hparams='{"cnn_width": 16}',
        single_test_envs=True,
    )
    assert len(jobs) == 3 * 2 and len({j.output_dir for j in jobs}) == 6
    calls = []

    def fake_run(cfg):
        calls.append(cfg)
        train(cfg)

    assert run_jobs(jobs, (0, 2), run=fake_run, progress=False) == (3, 0)
    assert run_jobs(jobs, (0, 2), run=fake_run, progress=False) == (0, 3)
    assert len(calls) == 3
    records = load_records(tmp_path)
    table = results_table(records)[0]
    assert table.headers[0] == "algorithm" and table.rows[0][0] == "ERM"


def _record(step, test_env, accs, test_envs=None):
    rec = {"step": step, "args": {"test_envs": test_envs or [test_env]}}
    for i, (a_in, a_out) in enumerate(accs):
        rec[f"env{i}_in_acc"], rec[f"env{i}_out_acc"] = a_in, a_out
    return rec


def test_selection_methods_on_hand_made_records():
    run = [
        _record(0, 0, [(0.3, 0.2), (0.6, 0.6), (0.6, 0.6)]),
        _record(1, 0, [(0.9, 0.8), (0.7, 0.5), (0.7, 0.5)]),
        _record(2, 0, [(0.5, 0.9), (0.7, 0.7), (0.7, 0.7)]),
    ]
    assert select_run(run, "training_domain") == {"val_acc": 0.7, "test_acc": 0.5, "step": 2}
    assert select_run(run, "oracle")["test_acc"] == 0.5
    with pytest.raises(ValueError, match="selection"):
        select_run(run, "magic")


@pytest.mark.slow
def test_erm_on_rotated_digits_beats_chance_quickly():
    records = train(
        TrainConfig(
            dataset="RotatedDigits",
            test_envs=[0],
            steps=150,
            checkpoint_freq=149,
            output_dir=None,
            hparams={"cnn_width": 32},
            progress=False,
        )
    )
    assert records[-1]["env0_in_acc"] > 0.5  # chance is 0.1


def test_load_algorithm_never_downloads_resnet_weights(tmp_path):
    hparams = resolve_hparams(
        hparam_space(ERM, "PACS"), 0, 0, {"resnet18": True, "resnet_pretrained": False}
    )
    algorithm = ERM((3, 72, 72), 3, 2, hparams)
    saved = {**hparams, "resnet_pretrained": True}  # as a real run would have recorded it
    torch.save(
        {
            "args": {"algorithm": "ERM"},
            "model_input_shape": [3, 72, 72],
            "model_num_classes": 3,
            "model_num_domains": 2,
            "model_hparams": saved,
            "model_dict": algorithm.state_dict(),
        },
        tmp_path / "model.pkl",
    )
    loaded = load_algorithm(tmp_path / "model.pkl")  # the network is blocked: a download would fail
    x = torch.randn(2, 3, 72, 72)
    algorithm.eval(), loaded.eval()
    assert torch.allclose(loaded.predict(x), algorithm.predict(x))
    assert loaded.hparams["resnet_pretrained"] is True


def test_compare_algorithms_keeps_models_on_request():
    from papers_shared.dg import compare_algorithms, comparison_table, mean_accuracy

    results = compare_algorithms(
        "DebugDomains",
        {"erm": ("ERM", {"cnn_width": 16})},
        test_envs=[0],
        seeds=[0],
        steps=2,
        checkpoint_freq=1,
        progress=False,
        keep_models=True,
    )
    assert len(results) == 1 and isinstance(results[0].algorithm, ERM)
    assert 0 <= mean_accuracy(results, "erm") <= 1
    assert comparison_table(results, "DebugDomains").rows[0][0] == "erm"
