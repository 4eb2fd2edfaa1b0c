"""The image-folder cache: every image of a folder decoded once into a uint8 memory-mapped file
(:func:`prepare_image_folder`), which the run's DataLoader then streams (:func:`~.data_source.folder_batches`).

Cache layout (``<data_dir>/.diffusion-core-cache/`` by default, else ``<cache_dir>/<name>-<hash of data_dir>/``),
one set of files per ``(image_size, channels)``, e.g. ``32px-3ch``:

* ``32px-3ch.images.npy``: ``(N, H, W, C)`` uint8 (NumPy ``.npy``, opened as a read-only memmap);
* ``32px-3ch.labels.npy``: ``(N,)`` int64 class labels;
* ``32px-3ch.json``: the index (format, settings, N, class names, source fingerprint, SHA-256 of the images and
  labels); written last, so a cache is only trusted once complete, and checked against the contents on reuse;
* ``lock``: held (``flock``) while a process checks or builds the cache.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from . import images as image_files  # through the module: tests count the decodes
from .run_dir import missing_folders, remove_empty_folders

log = logging.getLogger("diffusion_core.train")

try:
    import fcntl
except ImportError:  # Windows: no lock; prepare from one process at a time
    fcntl = None

__all__ = ["CACHE_DIR_NAME", "FORMAT_VERSION", "PreparedFolder", "prepare_image_folder"]

CACHE_DIR_NAME = ".diffusion-core-cache"
# Bump when the layout or the decoding (images.decode_image) changes: old caches are rebuilt.
# 2: the sources' ctime and inode in the fingerprint; the SHA-256 of the contents in the index.
FORMAT_VERSION = 2


class PreparedFolder:
    """A prepared cache: ``images`` (read-only ``np.memmap``, uint8, ``(N, H, W, C)``), ``labels`` (int64,
    ``(N,)``), ``class_names`` (``[]`` for an unlabelled folder), ``fingerprint`` of the source files, ``sha256``
    of the decoded images and labels (what a checkpoint records of its data)."""

    def __init__(self, folder: Path, index: dict) -> None:
        self.cache_dir = folder
        self.index = index
        self.images_path = folder / index["images"]
        self.labels_path = folder / index["labels"]
        self.image_size, self.channels = index["image_size"], index["channels"]
        self.class_names: list[str] = list(index["class_names"])
        self.fingerprint: str = index["fingerprint"]
        self.sha256: str = index["sha256"]
        self._images = self._labels = None

    @property
    def images(self) -> np.memmap:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        return self._images

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.labels_path)
        return self._labels

    def __len__(self) -> int:
        return self.index["count"]

    def __getstate__(self) -> dict:  # paths travel, arrays do not
        return {**self.__dict__, "_images": None, "_labels": None}

    def __repr__(self) -> str:
        return (f"PreparedFolder({len(self)} images, {self.image_size}px, {self.channels} channel(s), "
                f"{len(self.class_names)} classes, cache {str(self.cache_dir)!r})")


def _fingerprint(root: Path, files: list[Path]) -> str:
    """What git's index compares to tell a file changed: the path, size, mtime, ctime and inode. The ctime
    cannot be set back by a program (an edit that keeps the size and restores the mtime still moves it); the
    path is hashed as bytes, so a name that is not valid UTF-8 works."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(os.fsencode(f.relative_to(root)) + b"\0")
        h.update(f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0".encode())
    return h.hexdigest()


def _content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the decoded images and labels: compared whenever the cache is reused (a damaged row is
    rebuilt, not trained on) and stored in checkpoints (a resumed run refuses other data)."""
    h = hashlib.sha256()
    rows = max(1, (64 << 20) // max(1, images[0].nbytes if len(images) else 1))  # about 64 MB per update
    for i in range(0, len(images), rows):
        h.update(np.ascontiguousarray(images[i:i + rows]).data)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()


def _cache_folder(root: Path, cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        return root / CACHE_DIR_NAME
    source = root.resolve()
    return Path(cache_dir) / f"{source.name or 'root'}-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"


def _lock(folder: Path):
    """Create ``folder`` and take its lock (an open file; closing it, or dying, releases the lock)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / "lock", "a")
    except OSError as e:
        # an errno, so that the command line reports it in one line like any file-system error
        raise PermissionError(errno.EACCES, f"cannot write the cache folder ({e.strerror or e}); "
                              "pass cache_dir= a writable folder", str(folder)) from None
    if fcntl is not None:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent preparations of one folder run one after another
    return fh


def _valid(folder: Path, want: dict) -> dict | None:
    """The index in ``folder`` if it describes a complete cache of exactly ``want``, else None."""
    try:
        index = json.loads((folder / f"{want['stem']}.json").read_text())
        if any(index.get(k) != v for k, v in want.items()):
            return None
        n, s, c = want["count"], want["image_size"], want["channels"]
        images = np.load(folder / index["images"], mmap_mode="r")
        labels = np.load(folder / index["labels"], mmap_mode="r")
        if (images.shape, images.dtype, labels.shape, labels.dtype) != ((n, s, s, c), np.uint8, (n,), np.int64):
            return None
        if index.get("sha256") != _content_sha256(images, labels):
            log.warning("the image cache %s is damaged (its contents do not match their SHA-256); rebuilding it",
                        folder)
            return None
        return index
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _commit(tmp: Path, final: Path) -> None:
    """Make ``tmp`` durable, then move it to ``final`` in one step."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _allocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes on disk for ``fd`` now. A memory-mapped file that is sparse gets its blocks when a
    page is first written, and when the disk is full then, the process dies of SIGBUS; reserved up front, a full
    disk is an ``OSError`` (ENOSPC) here, before any image is decoded."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except AttributeError:  # no posix_fallocate (macOS): write the zeros
        pass
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    chunk = bytes(1 << 20)
    done = os.fstat(fd).st_size
    os.lseek(fd, done, os.SEEK_SET)
    while done < size:
        done += os.write(fd, chunk[:min(len(chunk), size - done)])


def _open_images(path: Path, n: int, s: int, c: int) -> np.memmap:
    """A new ``(n, s, s, c)`` uint8 ``.npy`` at ``path``, its disk space reserved, opened as a writable memmap."""
    shape = (n, s, s, c)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
        size = fh.tell() + n * s * s * c
        fh.flush()
        try:
            _allocate(fh.fileno(), size)
        except OSError as e:
            raise OSError(e.errno, f"{e.strerror} while preparing the image cache ({size:,} bytes)",
                          str(path.parent)) from None
    return np.load(path, mmap_mode="r+")


def _build(folder: Path, want: dict, source: Path, files: list[Path], labels: np.ndarray, progress: bool) -> dict:
    stem, n, s, c = want["stem"], want["count"], want["image_size"], want["channels"]
    names = {"index": f"{stem}.json", "images": f"{stem}.images.npy", "labels": f"{stem}.labels.npy"}
    for name in names.values():  # the index first: a build killed halfway leaves nothing to trust
        (folder / name).unlink(missing_ok=True)
    tmp = {k: folder / f"{v}.tmp-{os.getpid()}" for k, v in names.items()}
    try:
        images = _open_images(tmp["images"], n, s, c)
        if progress:
            from .._progress import progress_bar

            files = progress_bar(files, desc=f"prepare {s}px", unit="img")
        for i, f in enumerate(files):
            images[i] = image_files.decode_image(f, s, c)
        images.flush()
        digest = _content_sha256(images, labels)
        del images
        with open(tmp["labels"], "wb") as fh:  # a handle: np.save would append ".npy" to the name
            fh.write(_npy_bytes(labels))
        index = {**want, "images": names["images"], "labels": names["labels"], "source": str(source.resolve()),
                 "sha256": digest}
        tmp["index"].write_text(json.dumps(index, indent=1))
        for k in ("images", "labels", "index"):  # the index last
            _commit(tmp[k], folder / names[k])
        _fsync_dir(folder)
        return index
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (written with one ``write``: NumPy's own file writer reports a short write on a
    full disk without an errno)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def prepare_image_folder(data_dir: str | Path, image_size: int, channels: int, *,
                         cache_dir: str | Path | None = None, progress: bool = False) -> PreparedFolder:
    """Decode every image of ``data_dir`` once (:func:`~.images.decode_image`, labels from :func:`~.images.class_folders`)
    into a uint8 memory-mapped cache, or reuse the cache when the files (relative paths, sizes, mtimes, ctimes,
    inodes) and settings are unchanged and the cache still matches the SHA-256 of its contents (else it is
    rebuilt). Subfolders that hold a training run are not data (:func:`~.images.list_images`). ``cache_dir``: where to keep it instead of ``<data_dir>/.diffusion-core-cache``
    (one subfolder per data folder, so one ``cache_dir`` can serve many).

    Raises:
        FileNotFoundError: ``data_dir`` is not a folder.
        ValueError: bad ``image_size``/``channels``; no image; an unreadable image; a root/subfolder mix.
        PermissionError: the cache folder cannot be written (and holds no valid cache): pass ``cache_dir``.
        OSError: the disk is full (ENOSPC, before any image is decoded: the cache's space is reserved first).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a folder")
    image_files.check_settings(image_size, channels)
    files, labels, class_names = image_files.class_folders(root)
    want = {"format": FORMAT_VERSION, "stem": f"{image_size}px-{channels}ch", "image_size": image_size,
            "channels": channels, "count": len(files), "class_names": class_names,
            "fingerprint": _fingerprint(root, files)}
    folder = _cache_folder(root, cache_dir)
    created = missing_folders(folder)
    try:
        lock = _lock(folder)
    except PermissionError:
        index = _valid(folder, want)  # a cache prepared earlier in a folder now read-only is still usable
        if index is None:
            raise
        return PreparedFolder(folder, index)
    with lock:
        try:
            for stale in folder.glob("*.tmp-*"):  # left by a killed preparation (we hold the lock: nobody writes them)
                stale.unlink(missing_ok=True)
            index = _valid(folder, want) or _build(folder, want, root, files, labels, progress)
        except BaseException:
            if created:  # a failed first preparation (a bad image, a full disk, Ctrl-C) leaves no cache folder
                (folder / "lock").unlink(missing_ok=True)
                remove_empty_folders(created)
            raise
    return PreparedFolder(folder, index)

