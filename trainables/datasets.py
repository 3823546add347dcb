"""Training data for the built-in trainables, split into train and validation once, put on the device once.

Only a dataset's *training* files are read: the validation split is carved out of them (seeded, stratified
when every class has members enough), so the official test set never influences hyperparameter selection.

`check_data` is what the service calls while validating a study: it only looks at the dict and the file
system. This module imports torch, pandas and scikit-learn inside the functions that need them, so
importing it stays cheap.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import math
import pickle
import struct
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from trainables._catalog import BUILTIN_TRAINABLES, CATEGORICAL_ENCODINGS, DATASETS, IMAGE_DATASETS
from trainables._defaults import DataConfig
from trainables._errors import DataError

if TYPE_CHECKING:
    import torch

# Standard file names of the training halves; each may also be gzipped (name + ".gz").
IDX_TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
IDX_IMAGES_MAGIC = 0x00000803  # 0x08 = unsigned byte, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # 0x08 = unsigned byte, 1 dimension (N,)
# torchvision's download layout, searched after root itself: root/MNIST/raw, root/FashionMNIST/raw.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass
class Dataset:
    """A train/val split on one device. Images are float32 in [0, 1]; labels int64 in 0..num_classes-1."""

    x_train: "torch.Tensor"  # (N_train, *input_shape) float32
    y_train: "torch.Tensor"  # (N_train,) int64
    x_val: "torch.Tensor"  # (N_val, *input_shape) float32
    y_val: "torch.Tensor"  # (N_val,) int64
    num_classes: int
    input_shape: tuple  # (C, H, W) for images, (F,) for tabular rows
    is_image: bool


def parse_data_config(data: Optional[dict]) -> DataConfig:
    """config["data"] as a DataConfig; unknown keys and impossible values raise DataError."""
    data = dict(data or {})
    known = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(
            f"data has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted(known))}"
        )
    cfg = DataConfig(**data)
    if cfg.dataset not in DATASETS:
        raise DataError(f"data.dataset is {cfg.dataset!r}, but must be one of {', '.join(DATASETS)}")
    vf = cfg.val_fraction
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 < vf < 1:
        raise DataError(f"data.val_fraction is {vf!r}, but must be a number in (0, 1), e.g. 0.2")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise DataError(f"data.seed is {cfg.seed!r}, but must be an integer >= 0")
    if cfg.categorical not in CATEGORICAL_ENCODINGS:
        raise DataError(
            f"data.categorical is {cfg.categorical!r}, but must be one of {', '.join(CATEGORICAL_ENCODINGS)}"
        )
    return cfg


def check_data(data: Optional[dict], trainable: Optional[str] = None) -> None:
    """Raise DataError if `data` names files that are missing or a csv target that is absent.

    Cheap: reads directory listings and at most a csv header. `trainable` (a built-in's name), when given,
    also rejects tabular data for a trainable that needs images.
    """
    cfg = parse_data_config(data)
    spec = BUILTIN_TRAINABLES.get(trainable) if trainable else None
    if spec is not None and spec.needs_images and cfg.dataset not in IMAGE_DATASETS:
        raise _needs_images(spec.name, cfg.dataset)
    if cfg.dataset in ("mnist", "fashion_mnist"):
        _find_idx_files(cfg)
    elif cfg.dataset == "cifar10":
        _find_cifar10_files(cfg)
    elif cfg.dataset == "csv":
        path = _find_csv(cfg)
        columns = _csv_header(path)
        if cfg.target not in columns:
            raise DataError(
                f"{path} has no column {cfg.target!r} (data.target); "
                f"its columns are {', '.join(map(repr, columns))}"
            )


def load_dataset(data: Optional[dict], device: Any = "cpu") -> Dataset:
    """Read the training data named by config["data"], split it, and move both halves to `device` once."""
    import torch

    cfg = parse_data_config(data)
    if cfg.dataset == "csv":
        x_train, y_train, x_val, y_val, num_classes = _load_csv(cfg)
    else:
        x, y = _load_images(cfg)  # (N, C, H, W) uint8 or float in [0, 1], (N,) int
        num_classes = int(y.max()) + 1
        train_idx, val_idx = split_indices(y, cfg.val_fraction, cfg.seed)
        x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
        if x.dtype == np.uint8:
            x_train = x_train.astype(np.float32) / 255.0
            x_val = x_val.astype(np.float32) / 255.0

    def on_device(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)
        # Images in channels_last (N, H, W, C in memory): the faster layout for convolutions on CPU and
        # tensor cores; index slices keep it. Shapes stay (N, C, H, W).
        return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t

    return Dataset(
        x_train=on_device(x_train, torch.float32),
        y_train=on_device(y_train, torch.int64),
        x_val=on_device(x_val, torch.float32),
        y_val=on_device(y_val, torch.int64),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        is_image=cfg.dataset in IMAGE_DATASETS,
    )


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): a seeded split, stratified by label when every class has >= 2 members and
    both sides have room for every class, else uniformly random. Both index arrays are sorted.

    Written with numpy rather than scikit-learn's train_test_split: importing scikit-learn costs about a
    second per trial process, longer than training a digits trial's first epochs.
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_val = math.ceil(n * val_fraction - 1e-9)  # rounded up like scikit-learn (digits: 360 val, 1437 train)
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"val_fraction {val_fraction} of {n} examples leaves an empty train or val split; "
            "use more data or another val_fraction"
        )
    rng = np.random.default_rng(seed)
    _, class_of, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() >= 2 and len(counts) <= min(n_val, n - n_val):
        # Each class gives val its share of n_val; the rounding remainder goes to the largest fractions.
        exact = counts * n_val / n
        quota = np.floor(exact).astype(np.int64)
        quota[np.argsort(quota - exact, kind="stable")[: n_val - quota.sum()]] += 1
        val_idx = np.concatenate(
            [rng.permutation(np.flatnonzero(class_of == c))[:q] for c, q in enumerate(quota)]
        )
    else:
        val_idx = rng.permutation(n)[:n_val]
    is_val = np.zeros(n, dtype=bool)
    is_val[val_idx] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _needs_images(trainable: str, dataset: str) -> DataError:
    return DataError(
        f"the {trainable} trainable needs image data; data.dataset {dataset!r} is tabular — use the mlp trainable "
        f"or one of {', '.join(IMAGE_DATASETS)}"
    )


# ---- images ------------------------------------------------------------------------------------------


def _load_images(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the whole training set: x (N, C, H, W), y (N,) int64."""
    if cfg.dataset == "digits":
        pixels, y = _load_digits()  # (1797, 64) values 0..16, (1797,)
        x = (pixels / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8) in [0, 1]
        return x, y
    if cfg.dataset in ("mnist", "fashion_mnist"):
        images_path, labels_path = _find_idx_files(cfg)
        x = _read_idx(images_path, IDX_IMAGES_MAGIC)  # (N, 28, 28) uint8
        y = _read_idx(labels_path, IDX_LABELS_MAGIC)  # (N,) uint8
        if x.ndim != 3 or len(x) != len(y):
            raise DataError(
                f"{images_path} holds {x.shape[0]} images of shape {x.shape[1:]} but {labels_path} holds "
                f"{len(y)} labels; expected matching (N, H, W) images and (N,) labels"
            )
        return x[:, None], y.astype(np.int64)  # (N, 1, H, W)
    return _read_cifar10(_find_cifar10_files(cfg))


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (offline): 1797 8x8 images as (1797, 64) pixel values 0..16 and labels.

    Reads the csv that sklearn.datasets.load_digits reads, without importing scikit-learn (about a second
    per trial process); falls back to load_digits itself if a scikit-learn release moves the file.
    """
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec and spec.submodule_search_locations else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")  # (1797, 65): 64 pixels, then the label
            return table[:, :64], table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target.astype(np.int64)


def _existing(path: Path) -> Optional[Path]:
    """`path` or `path.gz`, whichever exists."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _require_root(cfg: DataConfig, expected: str) -> Path:
    if not cfg.root:
        raise DataError(f"data.root is not set; {cfg.dataset} needs the folder holding {expected}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; {cfg.dataset} needs a folder holding {expected}")
    return root


def _find_idx_files(cfg: DataConfig) -> tuple[Path, Path]:
    expected = " and ".join(f"{name}[.gz]" for name in IDX_TRAIN_FILES)
    root = _require_root(cfg, expected)
    for folder in (root, root / TORCHVISION_FOLDERS[cfg.dataset] / "raw"):
        found = [_existing(folder / name) for name in IDX_TRAIN_FILES]
        if all(found):
            return found[0], found[1]  # type: ignore[return-value]
    raise DataError(f"{root} does not hold {expected}, the {cfg.dataset} training files in IDX format")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (http://yann.lecun.com/exdb/mnist/) of unsigned bytes, gzipped or not, as an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} could not be read ({err}); expected an IDX file, optionally gzipped") from err
    ndim = magic & 0xFF
    header = 4 + 4 * ndim  # magic, then one big-endian int32 per dimension
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', raw[:4])[0]:08x}" if len(raw) >= 4 else "nothing"
        raise DataError(f"{path} starts with {found}, not the IDX magic number 0x{magic:08x}")
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its IDX header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(
            f"{path} declares shape {shape} ({size} bytes of data) but holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_cifar10_files(cfg: DataConfig) -> list[Path]:
    expected = f"{CIFAR10_FOLDER}/data_batch_1..5 (the CIFAR-10 python version)"
    root = _require_root(cfg, expected)
    for folder in (root / CIFAR10_FOLDER, root):
        files = [folder / name for name in CIFAR10_TRAIN_FILES]
        if all(f.is_file() for f in files):
            return files
    missing = [name for name in CIFAR10_TRAIN_FILES if not (root / CIFAR10_FOLDER / name).is_file()]
    raise DataError(f"{root} does not hold {expected}; missing {', '.join(missing)}")


def _read_cifar10(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in files:
        try:
            with open(path, "rb") as f:
                # The official format is a pickle; only open files you trust (the user's own data folder).
                batch = pickle.load(f, encoding="bytes")
        except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
            raise DataError(f"{path} could not be unpickled ({err}); expected a CIFAR-10 python batch") from err
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise DataError(
                f"{path} is not a CIFAR-10 batch: expected a pickled dict with b'data' and b'labels'"
            )
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
            raise DataError(
                f"{path} holds data of shape {data.shape} and {len(labels)} labels; expected (N, 3072) and N"
            )
        xs.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 red, 1024 green, 1024 blue values
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


# ---- csv ---------------------------------------------------------------------------------------------


def _find_csv(cfg: DataConfig) -> Path:
    if not cfg.path:
        raise DataError("data.path is not set; the csv dataset needs the path of a csv file")
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; data.path must name a csv file with a header row")
    if not cfg.target:
        raise DataError(f"data.target is not set; name the column of {path} that holds the class label")
    return path


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} could not be read as a utf-8 csv file ({err})") from err


def _load_csv(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Features learnt on the train split only: numeric columns standardised (missing -> train mean),
    other columns one-hot (unseen -> all zeros) or ordinal (unseen -> -1)."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    path = _find_csv(cfg)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        raise DataError(f"{path} could not be parsed as a csv file ({err})") from err
    if cfg.target not in frame.columns:
        raise DataError(
            f"{path} has no column {cfg.target!r} (data.target); its columns are "
            f"{', '.join(map(repr, map(str, frame.columns)))}"
        )
    target = frame.pop(cfg.target)
    if target.isna().any():
        raise DataError(
            f"{path} column {cfg.target!r} has {int(target.isna().sum())} empty cell(s); "
            "every row needs a label"
        )
    if frame.shape[1] == 0:
        raise DataError(f"{path} has no feature columns besides the target {cfg.target!r}")
    try:
        y, classes = pd.factorize(target, sort=True)  # labels of any dtype -> 0..K-1 in sorted order
    except TypeError:  # mixed types (e.g. 1 and "a") do not sort; strings do
        y, classes = pd.factorize(target.astype(str), sort=True)
    if len(classes) < 2:
        raise DataError(
            f"{path} column {cfg.target!r} has {len(classes)} distinct value(s); a classifier needs >= 2"
        )

    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    # Uniform strings for the encoders: a column mixing 1 and "a" would otherwise be rejected.
    for c in categorical:
        frame[c] = frame[c].astype("string").fillna("<missing>").astype(object)
    encoder = (
        OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
        if cfg.categorical == "onehot"
        else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float32)
    )
    standardise = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler())
    features = ColumnTransformer(
        [
            ("numeric", standardise, numeric),
            ("categorical", encoder, categorical),
        ],
        sparse_threshold=0.0,
    )
    train_idx, val_idx = split_indices(y, cfg.val_fraction, cfg.seed)
    try:
        x_train = features.fit_transform(frame.iloc[train_idx]).astype(np.float32)  # statistics of train only
        x_val = features.transform(frame.iloc[val_idx]).astype(np.float32)
    except ValueError as err:  # e.g. "inf" in a numeric column
        raise DataError(f"{path} could not be turned into features ({err})") from err
    y = y.astype(np.int64)
    return x_train, y[train_idx], x_val, y[val_idx], len(classes)
