"""Where data files come from: find a local copy, download with md5 check, read IDX/npz into checked uint8 arrays."""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fashion_lab.errors import DataError

# IDX (http://yann.lecun.com/exdb/mnist/): big-endian magic 0x00000800 | type << 8 | ndim, then one uint32 per dim.
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


def candidates(file_name: str, dirs: Sequence[str | Path]) -> list[Path]:
    """Paths where `file_name` may live, in priority order; IDX files may be stored gzipped or not.

    >>> [p.as_posix() for p in candidates("t10k-labels-idx1-ubyte.gz", ["data"])]
    ['data/t10k-labels-idx1-ubyte', 'data/t10k-labels-idx1-ubyte.gz']
    """
    stem = file_name.removesuffix(".gz")
    names = [file_name] if stem.endswith(".npz") else [stem, stem + ".gz"]
    return [Path(d).expanduser() / n for d in dirs for n in names]


def find(file_name: str, dirs: Sequence[str | Path]) -> Path | None:
    """The first existing candidate of `file_name` in `dirs`, or None."""
    return next((p for p in candidates(file_name, dirs) if p.is_file()), None)


@contextmanager
def atomic_write(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest`, renamed to `dest` only if the block ends without an error, else removed:
    `dest` is either absent, the old file, or complete (os.replace is atomic within a folder)."""
    # A unique name made like mkstemp's, but created with open()'s usual mode 0666 & ~umask (mkstemp's is 0600),
    # so the finished file has the mode any other would, and no one has to read or set the process umask.
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.part"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# Download policy: seconds a stalled connection may stay silent, tries per mirror, first backoff (doubled each retry).
TIMEOUT_S, RETRIES, BACKOFF_S = 30.0, 3, 1.0


def download(urls: Sequence[str], dest: Path, md5: str, offline: str = "") -> Path:
    """Download to `dest` through a temporary file that is renamed only once its md5 matches.

    `offline` names a way to get the file without this download (a package), for the error's fix.

    Written by hand because torchvision's `download_url` streams straight into the final name with no timeout:
    a stalled server hangs it and an interrupted download is left behind looking like a real file.
    Each mirror is tried RETRIES times with exponential backoff; the rename is atomic, so two processes
    downloading into the same folder at once both end with a complete file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = {}  # the last error of each mirror
    for url in urls:
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                with atomic_write(dest) as tmp, open(tmp, "wb") as f:
                    got = _fetch(url, f, TIMEOUT_S)
                    if got != md5:
                        raise DataError(f"md5 {got} != expected {md5}")
                return dest
            except (OSError, DataError) as e:  # URLError, HTTPError, timeouts and short reads are OSErrors
                errors[url] = f"{url}: {e}"
    raise DataError(
        f"Could not download {dest.name} after {RETRIES} tries per mirror ({'; '.join(errors.values())}). "
        f"Fix: check your connection and retry{offline}, or place the file yourself in {dest.parent}/."
    )


def _fetch(url: str, f, timeout: float) -> str:
    """Stream `url` into the open file `f`; return the md5 of what was read. Raises OSError on a short read."""
    from tqdm.auto import tqdm  # torchvision's and Lightning's dependency, imported only when downloading

    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.length
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
            while chunk := response.read(1 << 16):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if total is not None and bar.n < total:
            raise OSError(f"connection closed after {bar.n} of {total} bytes")
    return digest.hexdigest()


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array, checking magic, dims and length.

    torchvision's `read_sn3_pascalvincent_tensor` reads only uncompressed files and fails with a bare assert,
    so this small reader checks what a user can get wrong and says how to fix it.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is unreadable or truncated ({e}). Fix: delete it and download it again.") from e
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != IDX_MAGIC[kind]:
        found = "nothing" if magic is None else f"{magic:#010x}"
        raise DataError(
            f"{path} is not an IDX {kind} file: magic number {found}, expected {IDX_MAGIC[kind]:#010x}. "
            "Fix: delete it and download it again, or point data_dir at the original files."
        )
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated or padded: header says shape {shape} ({int(np.prod(shape))} bytes), "
            f"found {data.size} bytes. Fix: delete it and download it again."
        )
    return data.reshape(shape)


def read_npz(path: Path, ndim: int) -> np.ndarray:
    """Read the single array `arr_0` of an npz file as in the K49 release (`np.savez_compressed(f, x)`)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                raise DataError(
                    f"{path} has arrays {npz.files}, expected one array under the key 'arr_0' as in the official "
                    "K49 files. Fix: save it with np.savez_compressed(path, array), or download the original."
                )
            array = npz["arr_0"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path} is unreadable or truncated ({e}). Fix: delete it and download it again.") from e
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{path} holds a {array.dtype} array of shape {array.shape}, expected {ndim} dimensions of integers "
            f"({'N×28×28 uint8 images' if ndim == 3 else 'N int labels'}). Fix: download the original file."
        )
    if ndim == 3 and array.dtype != np.uint8:
        raise DataError(
            f"{path} holds {array.dtype} images, expected uint8 pixels 0..255. Fix: download the original file."
        )
    return array
