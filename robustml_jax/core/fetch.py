"""Downloading registered datasets into the data dir (machines with internet only).

Each file is streamed into a hidden temp file in its destination folder while its SHA-256 is
computed; only a file whose digest matches is renamed into place (``os.replace``, atomic on
POSIX). A mismatch, a dropped connection or a crash leaves no file at the final path, and stale
temp files from a killed run are removed by the next fetch. Archives (``.tar.gz``) are unpacked
into a temp folder that is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import tarfile
import tempfile
import urllib.request

from robustml_jax.core import datasets, paths

__all__ = ["ChecksumError", "DownloadError", "download_file", "fetch", "unpack_tar"]

_TMP_PREFIX = ".fetch-"


class ChecksumError(ValueError):
    """The downloaded bytes do not have the registered SHA-256."""


class DownloadError(OSError):
    """The download did not complete."""


def _clean_stale(folder: pathlib.Path) -> None:
    if folder.is_dir():
        for p in folder.glob(f"{_TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                p.unlink()


def download_file(
    url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0
) -> pathlib.Path:
    """Downloads ``url`` to ``dest`` atomically, verifying its SHA-256.

    Raises:
      ChecksumError: the digest differs (nothing is written at ``dest``).
      DownloadError: the connection failed or ended early (nothing is written at ``dest``).
    """
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{dest.name}.", dir=dest.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    expected = resp.headers.get("Content-Length")
                    n = 0
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
            except (OSError, ValueError) as e:  # URLError, http.client.IncompleteRead, timeouts
                raise DownloadError(f"download of {url} failed: {e}") from e
            if expected is not None and n != int(expected):
                raise DownloadError(f"download of {url} ended early: {n} of {expected} bytes")
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != sha256:
            raise ChecksumError(
                f"SHA-256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; "
                f"{dest} was not written"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def unpack_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> pathlib.Path:
    """Unpacks a tar archive into ``dest`` atomically (temp folder, then rename)."""
    dest = pathlib.Path(dest)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
        if dest.exists():
            raise FileExistsError(f"{dest} already exists; remove it to unpack again")
        os.replace(tmp, dest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def fetch(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    log=print,
) -> list[pathlib.Path]:
    """Downloads every remote file of dataset ``name`` into the data dir.

    Args:
      name: a registered dataset with remote files.
      data_dir: target folder (default: :func:`paths.data_dir`).
      base_url: replaces each file's original host and path prefix by ``base_url/<relpath>``
        (a mirror laid out like the data dir, e.g. a local server in tests).
      force: download files that are already present.

    Returns:
      The paths of the files now present.
    """
    spec = datasets.get_spec(name)
    if not spec.remote:
        raise ValueError(
            f"dataset '{name}' has no registered download location; to get it: {spec.how_to_get}"
        )
    root = pathlib.Path(data_dir) if data_dir is not None else paths.data_dir()
    out = []
    for rf in spec.remote:
        dest = root / rf.relpath
        if dest.exists() and not force:
            log(f"{name}: {rf.relpath} present")
            out.append(dest)
            continue
        url = f"{base_url.rstrip('/')}/{rf.relpath}" if base_url else rf.url
        log(f"{name}: downloading {url}")
        out.append(download_file(url, dest, rf.sha256))
    return out
