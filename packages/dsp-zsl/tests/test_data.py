"""The xlsa17 reader on files written in the official layout, and the synthetic writer."""

from __future__ import annotations

import numpy as np
import pytest
from dsp_zsl.data import SyntheticZSLConfig, load_xlsa17, write_synthetic_xlsa17
from scipy.io import savemat


def _write_fixture(root, *, drop=None, transpose_features=False):
    """6 classes (0..3 seen, 4..5 unseen), 4 images each, 5-d features, 3-d attributes."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 4)  # 0-based
    feats = rng.uniform(0, 10, size=(labels.size, 5))
    att = rng.uniform(0.1, 1.0, size=(3, 6))  # d_a x C, not normalised
    seen_idx = np.flatnonzero(labels < 4)
    trainval = seen_idx[np.arange(seen_idx.size) % 4 != 0]
    test_seen = seen_idx[np.arange(seen_idx.size) % 4 == 0]
    test_unseen = np.flatnonzero(labels >= 4)
    folder = root / "TOY"
    folder.mkdir()
    one = lambda a: (a + 1).reshape(-1, 1).astype(np.float64)  # noqa: E731
    res = {
        "features": feats if transpose_features else feats.T,
        "labels": one(labels),
        "image_files": np.array([[f"{i}.jpg"] for i in range(labels.size)], dtype=object),
    }
    splits = {
        "att": att,
        "original_att": att * 100,
        "allclasses_names": np.array([[f"c{i}"] for i in range(6)], dtype=object),
        "trainval_loc": one(trainval),
        "train_loc": one(trainval[trainval < 8]),
        "val_loc": one(trainval[trainval >= 8]),
        "test_seen_loc": one(test_seen),
        "test_unseen_loc": one(test_unseen),
    }
    if drop:
        splits.pop(drop)
    savemat(str(folder / "res101.mat"), res)
    savemat(str(folder / "att_splits.mat"), splits)
    return feats, labels, att, trainval, test_seen, test_unseen


def test_loader_reads_official_layout(tmp_path):
    feats, labels, att, trainval, test_seen, test_unseen = _write_fixture(tmp_path)
    data = load_xlsa17(tmp_path, "TOY", preprocessing=False)
    assert data.train_x.shape == (trainval.size, 5)
    np.testing.assert_allclose(
        data.train_x, feats[trainval], rtol=1e-6
    )  # transposed, 1-based fixed
    np.testing.assert_array_equal(data.train_y, labels[trainval])
    np.testing.assert_array_equal(data.test_unseen_y, labels[test_unseen])
    np.testing.assert_array_equal(data.seen_classes, [0, 1, 2, 3])
    np.testing.assert_array_equal(data.unseen_classes, [4, 5])
    assert data.prototypes.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(data.prototypes, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(data.prototypes[2], att[:, 2] / np.linalg.norm(att[:, 2]), rtol=1e-6)
    assert data.class_names[:2] == ["c0", "c1"]


def test_minmax_fitted_on_train_only(tmp_path):
    feats, _, _, trainval, _, test_unseen = _write_fixture(tmp_path)
    data = load_xlsa17(tmp_path, "TOY")
    assert data.train_x.max() == pytest.approx(1.0)
    assert data.train_x.min() == pytest.approx(0.0)
    lo, hi = feats[trainval].min(0), feats[trainval].max(0)
    expected = (feats[test_unseen] - lo) / (hi - lo)
    np.testing.assert_allclose(data.test_unseen_x, expected, rtol=1e-5, atol=1e-6)
    assert data.test_unseen_x.max() > 1.0 or data.test_unseen_x.min() < 0.0  # not refitted on test


def test_validation_protocol(tmp_path):
    _write_fixture(tmp_path)
    data = load_xlsa17(tmp_path, "TOY", validation=True)
    assert data.test_seen_x.shape[0] == 0
    assert set(data.unseen_classes).isdisjoint(set(data.seen_classes))


def test_missing_field_is_named(tmp_path):
    _write_fixture(tmp_path, drop="test_unseen_loc")
    with pytest.raises(ValueError, match="test_unseen_loc"):
        load_xlsa17(tmp_path, "TOY")


def test_features_stored_n_by_f_are_refused(tmp_path):
    _write_fixture(tmp_path, transpose_features=True)
    with pytest.raises(ValueError, match="F x N"):
        load_xlsa17(tmp_path, "TOY")


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="xlsa17"):
        load_xlsa17(tmp_path, "CUB")


def test_npz_with_same_keys(tmp_path):
    _write_fixture(tmp_path)
    from scipy.io import loadmat

    folder = tmp_path / "TOY"
    for stem in ("res101", "att_splits"):
        mat = {
            k: v for k, v in loadmat(str(folder / f"{stem}.mat")).items() if not k.startswith("__")
        }
        mat.pop("image_files", None)
        mat.pop("allclasses_names", None)
        np.savez(folder / f"{stem}_npz.npz", **mat)
        (folder / f"{stem}.mat").unlink()
        (folder / f"{stem}_npz.npz").rename(folder / f"{stem}.npz")
    data = load_xlsa17(tmp_path, "TOY")
    assert data.train_x.shape[1] == 5 and data.num_classes == 6


def test_synthetic_writer_goes_through_the_loader(tmp_path):
    cfg = SyntheticZSLConfig(num_seen=6, num_unseen=3, num_val=2, samples_per_class=10, seed=1)
    folder = write_synthetic_xlsa17(tmp_path, "SYN", cfg)
    data = load_xlsa17(tmp_path, "SYN")
    assert data.num_classes == 9 and len(data.seen_classes) == 6 and len(data.unseen_classes) == 3
    true = np.load(folder / "true_prototypes.npy")
    # the given prototypes differ from the hidden true ones (the domain shift)
    cos = (true * data.prototypes).sum(1)
    assert cos.mean() < 0.95


@pytest.mark.slow
def test_extractor_writes_what_the_loader_reads(tmp_path):
    pytest.importorskip("timm")
    from dsp_zsl.data.extract import extract_features, write_res101
    from PIL import Image
    from scipy.io import savemat

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray((np.random.default_rng(i).random((40, 48, 3)) * 255).astype(np.uint8)).save(
            p
        )
        paths.append(p)
    feats = extract_features(paths, model_name="resnet18", pretrained=False, image_size=32)
    assert feats.shape == (3, 512) and feats.dtype == np.float32
    folder = tmp_path / "EXT"
    write_res101(folder, feats, [0, 0, 1], [str(p) for p in paths])
    one = lambda a: (np.asarray(a) + 1).reshape(-1, 1).astype(np.float64)  # noqa: E731
    savemat(str(folder / "att_splits.mat"), {
        "att": np.ones((4, 2)), "trainval_loc": one([0, 1]), "test_seen_loc": one([1]),
        "test_unseen_loc": one([2]),
    })  # fmt: skip
    data = load_xlsa17(tmp_path, "EXT", preprocessing=False)
    np.testing.assert_allclose(data.train_x, feats[:2], rtol=1e-6)
    np.testing.assert_array_equal(data.unseen_classes, [1])
