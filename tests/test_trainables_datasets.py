"""trainables.datasets: loaders on tiny files written in the real formats, the split, check_data's errors."""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import DataError, check_data, load_dataset
from trainables.datasets import split_indices


# ---- writers of the real formats ---------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, one big-endian int32 per dim, then the data."""
    payload = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_images(n: int = 40, height: int = 6, width: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixel (0, 0) encodes the label (label * 20), so pairing errors show."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    images = rng.integers(0, 256, size=(n, height, width), dtype=np.uint8)
    images[:, 0, 0] = labels * 20
    return images, labels


def write_cifar_batches(folder: Path, per_batch: int = 4) -> None:
    """Five pickled dicts with b"data" (N, 3072) uint8 rows = 1024 red, 1024 green, 1024 blue, b"labels"."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        data = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        data[:, 0] = np.array(labels, dtype=np.uint8)[:, None, None]  # red = label
        data[:, 1] = 100  # green
        data[:, 2] = 200  # blue
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
                 b"data": data.reshape(per_batch, 3072), b"filenames": [b"x.png"] * per_batch}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)


# ---- digits ------------------------------------------------------------------------------------------


def test_load_dataset_digits_shapes_scale_and_split():
    ds = load_dataset({"dataset": "digits"}, "cpu")
    assert ds.is_image and ds.num_classes == 10 and ds.input_shape == (1, 8, 8)
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_val.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    # stratified: every class is in the validation split in about its share (digits: ~180 per class)
    counts = torch.bincount(ds.y_val, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38


def test_load_dataset_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = load_dataset({"dataset": "digits", "val_fraction": 0.25}, "cpu")
    train_idx, val_idx = split_indices(digits.target, 0.25, seed=0)
    expected = torch.from_numpy(digits.images[val_idx] / 16.0).float()
    assert torch.equal(ds.x_val[:, 0], expected)
    assert ds.y_val.tolist() == digits.target[val_idx].tolist()
    assert ds.y_train.tolist() == digits.target[train_idx].tolist()


@pytest.mark.slow  # seconds, not milliseconds
def test_load_dataset_digits_does_not_import_scikit_learn():
    # importing scikit-learn costs about a second in every trial process
    code = (
        "import sys\n"
        "from trainables import load_dataset\n"
        "load_dataset({'dataset': 'digits'}, 'cpu')\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_dataset_is_deterministic_and_seed_changes_the_split():
    a = load_dataset({"dataset": "digits", "seed": 3}, "cpu")
    b = load_dataset({"dataset": "digits", "seed": 3}, "cpu")
    c = load_dataset({"dataset": "digits", "seed": 4}, "cpu")
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize("val_fraction, n_val", [(0.1, 180), (0.2, 360), (0.5, 899)])
def test_load_dataset_val_fraction_sets_the_val_size(val_fraction, n_val):
    ds = load_dataset({"dataset": "digits", "val_fraction": val_fraction}, "cpu")
    assert len(ds.y_val) == n_val and len(ds.y_train) == 1797 - n_val


# ---- split -------------------------------------------------------------------------------------------


def test_split_indices_is_a_deterministic_partition():
    labels = np.arange(100) % 5
    train, val = split_indices(labels, 0.2, seed=7)
    again_train, again_val = split_indices(labels, 0.2, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert len(val) == 20 and sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [4] * 5  # stratified
    assert not np.array_equal(val, split_indices(labels, 0.2, seed=8)[1])


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0] * 9 + [1]),  # a class with a single member cannot be stratified
        np.arange(10),  # more classes than validation slots
    ],
)
def test_split_indices_falls_back_to_a_random_split(labels):
    train, val = split_indices(labels, 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)


@pytest.mark.parametrize("n, val_fraction", [(2, 0.6), (3, 0.9), (1, 0.5)])
def test_split_indices_rejects_an_empty_split(n, val_fraction):
    with pytest.raises(DataError, match="empty train or val split"):
        split_indices(np.zeros(n), val_fraction, seed=0)


# ---- IDX (mnist, fashion_mnist) ---------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_dataset_reads_idx_files(tmp_path, dataset, gz):
    images, labels = make_idx_images()
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz)
    data = {"dataset": dataset, "root": str(tmp_path), "val_fraction": 0.25}
    check_data(data)
    ds = load_dataset(data, "cpu")
    assert ds.input_shape == (1, 6, 5) and ds.num_classes == 4 and ds.is_image
    assert len(ds.y_train) == 30 and len(ds.y_val) == 10
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        assert torch.equal(torch.round(x[:, 0, 0, 0] * 255).long(), y * 20)  # each image kept its label
        assert float(x.max()) <= 1.0
    # the pixels are the file's, scaled to [0, 1]
    val_rows = split_indices(labels, 0.25, 0)[1]
    expected = torch.from_numpy(images[val_rows].astype(np.float32) / 255)
    assert torch.equal(ds.x_val[:, 0], expected)


def test_load_dataset_finds_idx_files_in_the_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = make_idx_images()
    write_idx(raw / "train-images-idx3-ubyte", images, gz=True)
    write_idx(raw / "train-labels-idx1-ubyte", labels, gz=False)
    ds = load_dataset({"dataset": "fashion_mnist", "root": str(tmp_path)}, "cpu")
    assert len(ds.y_train) + len(ds.y_val) == 40


def test_load_dataset_rejects_a_wrong_idx_magic_number(tmp_path):
    images, labels = make_idx_images()
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", images, gz=False)  # images where labels belong
    with pytest.raises(DataError, match="train-labels-idx1-ubyte starts with 0x00000803, not the IDX magic"):
        load_dataset({"dataset": "mnist", "root": str(tmp_path)}, "cpu")


def test_load_dataset_rejects_a_truncated_idx_file(tmp_path):
    images, labels = make_idx_images()
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False)
    path.write_bytes(path.read_bytes()[:-7])
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    with pytest.raises(DataError, match=r"declares shape \(40, 6, 5\) \(1200 bytes of data\) but holds 1193"):
        load_dataset({"dataset": "mnist", "root": str(tmp_path)}, "cpu")


# ---- CIFAR-10 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("subfolder", ["cifar-10-batches-py", ""])
def test_load_dataset_reads_cifar10_batches(tmp_path, subfolder):
    write_cifar_batches(tmp_path / subfolder if subfolder else tmp_path)
    data = {"dataset": "cifar10", "root": str(tmp_path), "val_fraction": 0.25}
    check_data(data)
    ds = load_dataset(data, "cpu")
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.is_image
    assert len(ds.y_train) == 15 and len(ds.y_val) == 5
    x = torch.cat([ds.x_train, ds.x_val])
    y = torch.cat([ds.y_train, ds.y_val])
    assert torch.equal(torch.round(x[:, 0] * 255).long(), y[:, None, None].expand(-1, 32, 32))  # red
    assert torch.all(torch.round(x[:, 1] * 255) == 100) and torch.all(torch.round(x[:, 2] * 255) == 200)


def test_load_dataset_rejects_a_pickle_that_is_not_a_cifar_batch(tmp_path):
    write_cifar_batches(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"images": []}, f)
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 batch"):
        load_dataset({"dataset": "cifar10", "root": str(tmp_path)}, "cpu")


# ---- csv ---------------------------------------------------------------------------------------------


def write_table(tmp_path: Path, n: int = 40, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A csv with a numeric column, a categorical column and a string target. The validation rows (known
    from split_indices) get a colour never seen in training and numbers far from the training ones."""
    labels = np.array(["cat", "dog"])[np.arange(n) % 2]
    train_idx, val_idx = split_indices(labels, 0.25, seed)
    size = np.linspace(1.0, 4.0, n)
    size[val_idx] += 100.0  # full-data statistics would differ a lot from the train-only ones
    colour = np.array(["red", "green", "blue"])[np.arange(n) % 3].astype(object)
    colour[val_idx[0]] = "purple"
    lines = ["size,colour,animal"] + [f"{s},{c},{a}" for s, c, a in zip(size, colour, labels)]
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, train_idx, val_idx


def test_load_dataset_csv_uses_train_statistics_and_learns_categories_on_train(tmp_path):
    path, train_idx, val_idx = write_table(tmp_path)
    data = {"dataset": "csv", "path": str(path), "target": "animal", "val_fraction": 0.25}
    check_data(data)
    ds = load_dataset(data, "cpu")
    assert not ds.is_image and ds.num_classes == 2
    # features: size (standardised), then one-hot blue, green, red (sorted categories of the train split)
    assert ds.input_shape == (4,)
    size = np.linspace(1.0, 4.0, 40)
    mean, std = size[train_idx].mean(), size[train_idx].std()
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), (size[train_idx] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_val[:, 0].numpy(), (size[val_idx] + 100.0 - mean) / std, rtol=1e-5)
    assert torch.all(ds.x_train[:, 1:].sum(dim=1) == 1)
    assert torch.all(ds.x_val[0, 1:] == 0)  # "purple", unseen in training: all zeros
    assert torch.all(ds.x_val[1:, 1:].sum(dim=1) == 1)
    # string labels map to 0..K-1 in sorted order: cat = 0, dog = 1
    assert ds.y_train.tolist() == (train_idx % 2).tolist()


def test_load_dataset_csv_ordinal_encodes_unseen_categories_as_minus_one(tmp_path):
    path, train_idx, val_idx = write_table(tmp_path)
    ds = load_dataset(
        {"dataset": "csv", "path": str(path), "target": "animal", "val_fraction": 0.25,
         "categorical": "ordinal"},
        "cpu",
    )
    assert ds.input_shape == (2,)
    assert float(ds.x_val[0, 1]) == -1.0
    assert set(ds.x_train[:, 1].tolist()) == {0.0, 1.0, 2.0}


def test_load_dataset_csv_rejects_rows_without_a_label(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,a\n2,\n3,b\n4,a\n")
    with pytest.raises(DataError, match=r"column 'y' has 1 empty cell"):
        load_dataset({"dataset": "csv", "path": str(path), "target": "y"}, "cpu")


# ---- check_data --------------------------------------------------------------------------------------


def test_check_data_accepts_the_defaults_and_digits():
    check_data(None)
    check_data({"dataset": "digits", "val_fraction": 0.3, "seed": 2})


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_check_data_names_a_missing_root(tmp_path, dataset):
    with pytest.raises(DataError, match="data.root is not set"):
        check_data({"dataset": dataset})
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data.root {missing} is not a folder"):
        check_data({"dataset": dataset, "root": str(missing)})


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("mnist", "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"),
        ("cifar10", "cifar-10-batches-py/data_batch_1..5"),
    ],
)
def test_check_data_names_the_folder_and_the_files_it_lacks(tmp_path, dataset, expected):
    with pytest.raises(DataError) as err:
        check_data({"dataset": dataset, "root": str(tmp_path)})
    assert str(tmp_path) in str(err.value) and expected in str(err.value)
    with pytest.raises(DataError, match="does not hold"):  # the same error when loading
        load_dataset({"dataset": dataset, "root": str(tmp_path)}, "cpu")


def test_check_data_names_a_missing_csv_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=f"{path} does not exist"):
        check_data({"dataset": "csv", "path": str(path), "target": "y"})
    with pytest.raises(DataError, match="data.path is not set"):
        check_data({"dataset": "csv", "target": "y"})


def test_check_data_lists_the_columns_when_the_target_is_absent(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("height,colour,label\n1,red,a\n")
    with pytest.raises(DataError) as err:
        check_data({"dataset": "csv", "path": str(path), "target": "species"})
    message = str(err.value)
    assert str(path) in message and "'species'" in message and "'height', 'colour', 'label'" in message
    with pytest.raises(DataError, match="data.target is not set"):
        check_data({"dataset": "csv", "path": str(path)})


def test_check_data_rejects_tabular_data_for_the_cnn(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,a\n")
    with pytest.raises(DataError, match="the cnn trainable needs image data"):
        check_data({"dataset": "csv", "path": str(path), "target": "y"}, trainable="cnn")
    check_data({"dataset": "csv", "path": str(path), "target": "y"}, trainable="mlp")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": "imagenet"}, "data.dataset is 'imagenet', but must be one of digits"),
        ({"val_fraction": 0}, r"data.val_fraction is 0, but must be a number in \(0, 1\)"),
        ({"val_fraction": 1.0}, r"data.val_fraction is 1.0"),
        ({"seed": -1}, "data.seed is -1"),
        ({"categorical": "hash"}, "data.categorical is 'hash', but must be one of onehot, ordinal"),
        ({"dataset": "digits", "folder": "/x"}, "data has unknown key"),
    ],
)
def test_check_data_rejects_bad_values(data, message):
    with pytest.raises(DataError, match=message):
        check_data(data)


@pytest.mark.slow  # a Python process importing scikit-learn: seconds
def test_shipped_tabular_csv_is_what_its_script_makes_and_loads_as_described(tmp_path):
    """search_spaces/data/tabular.csv (the tabular task of benchmarks/search_quality.py) is exactly what
    make_tabular.py writes, and loads as its space file reads it: 15 standardised columns plus `site` one-hot
    (5 levels) = 20 features, 4 classes, 30 % of the 1200 rows to validate on."""
    folder = Path(__file__).resolve().parents[1] / "search_spaces" / "data"
    made = tmp_path / "tabular.csv"
    run = subprocess.run([sys.executable, str(folder / "make_tabular.py"), str(made)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert made.read_bytes() == (folder / "tabular.csv").read_bytes()
    ds = load_dataset({"dataset": "csv", "path": str(made), "target": "label", "val_fraction": 0.3, "seed": 0}, "cpu")
    assert (ds.input_shape, ds.num_classes, len(ds.y_train) + len(ds.y_val), len(ds.y_val)) == ((20,), 4, 1200, 360)
