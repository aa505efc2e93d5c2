"""Every file hgzoo reads as weights or a checkpoint, and every file it writes, goes through this module.

**The one safe reader**, :func:`safe_load`, recognises a file by its content, not its name:

* safetensors: a JSON header and raw tensors, nothing that runs;
* PyTorch's zip format (``.pt``, ``.pth``, ``.pth.tar``, ``.bin``, ...): ``torch.load(weights_only=True)``,
  which builds tensors and plain containers only. Besides those it admits numpy's array reconstruction
  (RNG states, older hgzoo checkpoints) and ``argparse.Namespace`` (timm's training checkpoints keep their
  arguments in one), both inert. Anything else a pickle names (``os.system``, ``builtins.eval``, a class
  of some package) is refused before it is built;
* Paddle's ``.pdparams``: a pickle read by a restricted unpickler that builds numpy arrays and nothing
  else, in every pickle protocol Paddle writes (2, 3, 4).

**Only regular files** are read (:func:`read_regular_file`: a FIFO or a device behind a file's name would never
end), and every limit is stated the same way (:func:`env_limit`, a positive number in an environment variable).

**Size limits** stop a small file from declaring a huge allocation: a file over ``HGZOO_MAX_FILE_BYTES``
(default 16 GiB) is refused; a safetensors header over 100 MB, a zip whose members declare more bytes
than the file could hold uncompressed, and a ``.pdparams`` whose arrays declare more bytes than the file
holds are refused as corrupt. PyTorch's pre-1.6 (non-zip) format is refused: its loader allocates what
the file declares before reading it.

**A run folder's lock**, :func:`lock_folder`: a ``.lock`` file created exclusively, holding its owner's pid and
host; a lock whose process is gone on this host is stale and taken over, any other refuses a second owner.

**The one atomic writer**, :func:`atomic_open` / :func:`atomic_write`: a uniquely named temporary file in
the destination folder, flushed and fsynced, renamed over the destination only when complete. A crash
leaves the old file or the new one, never a partial one, and concurrent writers never share a temporary.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import io
import json
import math
import os
import pickle
import re
import socket
import stat
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "safe_load", "read_safetensors", "load_pdparams", "detect_format", "atomic_open", "atomic_write",
    "max_file_bytes", "env_limit", "read_regular_file", "FileRefusedError", "UnsafePickleError",
    "CorruptCheckpointError", "CheckpointMismatchError", "FolderInUseError", "LOCK_NAME", "lock_folder",
    "unlock_folder", "WRITE_ERRNOS", "write_failure",
]

#: The largest safetensors header accepted (safetensors' own limit).
MAX_SAFETENSORS_HEADER = 100_000_000
_DEFAULT_MAX_FILE_BYTES = 16 << 30


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks to build something other than tensors, arrays and plain containers; nothing was built."""


class CorruptCheckpointError(ValueError):
    """The file is truncated, malformed, over a size limit, or not a weights file at all."""


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: missing, unexpected or mismatched keys."""


def env_limit(name: str, default: int, unit: str) -> int:
    """A limit from the environment variable ``name`` (a positive whole number of ``unit``, ``1e9`` allowed),
    ``default`` when it is unset or empty. Every size limit hgzoo applies is stated this way."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number == int(number)):
            raise ValueError(f"{name}={text!r} is not a whole number of {unit}") from None
        value = int(number)
    if value <= 0:
        raise ValueError(f"{name}={text!r} must be positive")
    return value


def max_file_bytes() -> int:
    """The largest weights or checkpoint file read: ``$HGZOO_MAX_FILE_BYTES``, default 16 GiB."""
    return env_limit("HGZOO_MAX_FILE_BYTES", _DEFAULT_MAX_FILE_BYTES, "bytes")


class FileRefusedError(ValueError):
    """A path that is not a regular file (a FIFO, a device, a socket, a folder), or a file over its byte limit.

    ``path`` and ``reason`` are kept, so that a caller can re-raise it as its own error type."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | os.PathLike, limit: int, knob: str) -> bytes:
    """The bytes of ``path``, a regular file (links resolved) of at most ``limit`` bytes.

    A FIFO, device or socket is refused before anything is read (``/dev/zero`` or a pipe behind an image's
    name would never end), and so is a file over ``limit`` (``knob``, the environment variable that raises
    it, is named in the message). The file is opened without blocking and checked again once open, and at
    most ``limit + 1`` bytes are ever read. Raises :class:`FileRefusedError`, ``FileNotFoundError`` if there
    is no such file, ``PermissionError`` if it cannot be read.
    """
    name = os.fspath(path)
    st = os.stat(name)  # follows links; FileNotFoundError as is
    if not stat.S_ISREG(st.st_mode):
        raise FileRefusedError(name, f"it is {_kind(st.st_mode)}, not a regular file")
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)  # what was opened, should the path have changed since the check
        if not stat.S_ISREG(st.st_mode):
            raise FileRefusedError(name, f"it is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileRefusedError(name, f"it is {st.st_size:,} bytes, over the {limit:,}-byte limit ({knob} "
                                   "raises it)")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 24, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise FileRefusedError(name, f"it grew past the {limit:,}-byte limit while being read ({knob} raises it)")
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------- detection

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickle of torch's pre-1.6 magic number


def detect_format(head: bytes) -> str | None:
    """``"safetensors"``, ``"torch"``, ``"torch-legacy"``, ``"pickle"`` (a ``.pdparams``) or None, from the
    first bytes of a file."""
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return None


def _checked_path(path: str | os.PathLike) -> tuple[Path, int]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path} is not a file (it is a directory)")
    if not stat.S_ISREG(st.st_mode):
        raise CorruptCheckpointError(f"{path} is not a weights file: it is {_kind(st.st_mode)}, not a regular file")
    size = st.st_size
    if size == 0:
        raise CorruptCheckpointError(f"{path} is empty (0 bytes): an interrupted download or save? Get it again")
    limit = max_file_bytes()
    if size > limit:
        raise CorruptCheckpointError(f"{path} is {size / 2**30:.1f} GiB, over the {limit / 2**30:.1f} GiB limit for "
                                     "a weights file; raise HGZOO_MAX_FILE_BYTES if you trust it")
    return path, size


def safe_load(path: str | os.PathLike) -> Any:
    """Read a weights or checkpoint file without running code from it.

    Returns a ``dict[str, Tensor]`` for safetensors, ``dict[str, ndarray]`` for a ``.pdparams``, and what
    ``torch.load(weights_only=True)`` builds for a PyTorch file. Raises :class:`UnsafePickleError` naming
    what the file asked to build, :class:`CorruptCheckpointError` for a truncated, malformed or oversized
    file, ``FileNotFoundError`` if there is none.
    """
    path, size = _checked_path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    kind = detect_format(head)
    if kind == "safetensors":
        return read_safetensors(path)[0]
    if kind == "torch":
        return _load_torch_zip(path, size)
    if kind == "pickle":
        return load_pdparams(path)
    if kind == "torch-legacy":
        raise CorruptCheckpointError(
            f"{path} uses PyTorch's pre-1.6 serialization, which the safe reader does not read (its loader allocates "
            "whatever the file declares); if you trust it, re-save it with a current PyTorch (torch.save)")
    raise CorruptCheckpointError(
        f"{path} is not a weights file hgzoo reads (safetensors, a PyTorch .pt/.pth/.pth.tar/.bin, or a Paddle "
        ".pdparams): its first bytes match none of them")


# ---------------------------------------------------------------------------------------------- safetensors

def read_safetensors(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, its header checked before anything is allocated."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path, size = _checked_path(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CorruptCheckpointError(f"{path} is not a safetensors file: shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise CorruptCheckpointError(f"{path} is corrupt: its safetensors header claims {n} bytes (the file has "
                                         f"{size}; the limit is {MAX_SAFETENSORS_HEADER})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptCheckpointError(f"{path} is corrupt: its safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path} is corrupt: its safetensors header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is not a readable safetensors file, it is corrupt ({e})") from None
    return tensors, {str(k): str(v) for k, v in metadata.items()}


# ---------------------------------------------------------------------------------------------- PyTorch

def _torch_safe_globals() -> list:
    """What ``weights_only`` may build besides tensors and containers: numpy arrays and dtypes, and
    ``argparse.Namespace`` (attribute bags). None of them runs code."""
    import numpy.dtypes as nd

    out: list = [np.ndarray, np.dtype, argparse.Namespace]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        with contextlib.suppress(ImportError, AttributeError):
            out += [__import__(mod, fromlist=["_reconstruct"])._reconstruct,
                    __import__(mod, fromlist=["scalar"]).scalar]
    out += [getattr(nd, n) for n in dir(nd) if n.endswith("DType") and isinstance(getattr(nd, n), type)]
    return out


def _check_zip(path: Path, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:  # "zip file version 12.7"
        raise CorruptCheckpointError(f"{path} is corrupt: not a readable zip (PyTorch) file ({e}); save or download "
                                     "it again") from None
    declared = sum(i.file_size for i in infos)
    # torch.save stores its members uncompressed: what they declare cannot exceed the file by much.
    if declared > 2 * size + (64 << 20):
        raise CorruptCheckpointError(
            f"{path} is refused: its zip members declare {declared / 2**20:.0f} MiB of content in a "
            f"{size / 2**20:.1f} MiB file (a zip bomb, or not a torch.save file)")


_GLOBAL_IN_MESSAGE = re.compile(r"(?:GLOBAL|global|Unsupported class|function)\s+([\w.]+)")


def _load_torch_zip(path: Path, size: int) -> Any:
    import torch

    _check_zip(path, size)
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - only used to name what was refused
            unsafe = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _torch_safe_globals()}
        named = [g for g in unsafe if g not in allowed] or _GLOBAL_IN_MESSAGE.findall(str(e))[:1] or ["(unnamed)"]
        if "Weights only load failed" in str(e) and named != ["(unnamed)"]:
            raise UnsafePickleError(
                f"{path} was refused: it asks to build {', '.join(named[:5])}, and hgzoo loads PyTorch files with "
                "weights_only=True (tensors and plain data only). If you trust the file, save just its tensors from "
                "the program that wrote it (torch.save(model.state_dict(), 'clean.pth') or safetensors) and give "
                "hgzoo that file") from None
        raise CorruptCheckpointError(f"{path} is corrupt or not a PyTorch checkpoint: {_first_line(e)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            NotImplementedError) as e:
        raise CorruptCheckpointError(f"{path} is corrupt or not a PyTorch checkpoint: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


# ---------------------------------------------------------------------------------------------- .pdparams

def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it to carry ``bytes``: text to latin-1 bytes, nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError(f"refused: it calls _codecs.encode({type(text).__name__}, {encoding!r}), which a "
                                ".pdparams file only uses as pickle protocol 2's latin-1 encoding of bytes")
    return codecs.encode(text, "latin1")


# The only callables a .pdparams pickle may name: numpy array and dtype reconstruction (and protocol 2's bytes).
_PDPARAMS_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}
_NUMERIC_KINDS = "biufc"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in _PDPARAMS_ALLOWED:
            raise UnsafePickleError(
                f"refused: it asks to build {module}.{name}, and a .pdparams file may only hold numpy arrays. "
                "It is not a plain Paddle checkpoint; do not load it from an untrusted source")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError("refused: it holds a persistent id, and a .pdparams file holds no external references")


def load_pdparams(path: str | os.PathLike | bytes) -> dict[str, np.ndarray]:
    """Load a ``.pdparams`` file (a pickle of numpy arrays) without Paddle and without running code.

    Paddle's bookkeeping entry ``StructuredToParameterName@@`` is dropped. Anything but numeric numpy
    arrays is refused, and so is a file whose arrays declare more bytes than it holds.
    """
    if isinstance(path, bytes):
        data, name = path, "<bytes>"
    else:
        checked, _ = _checked_path(path)
        name = str(path)
        try:  # read as checked: a regular file under the limit, even if the path changed since
            data = read_regular_file(checked, max_file_bytes(), "HGZOO_MAX_FILE_BYTES")
        except FileRefusedError as e:
            raise CorruptCheckpointError(f"{name} is refused: {e.reason}") from None
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{name} was {e}") from None
    except Exception as e:  # truncated or garbage files fail in many ways inside pickle
        raise CorruptCheckpointError(
            f"{name} is not a readable .pdparams checkpoint (truncated or corrupt: {type(e).__name__}: {e}). "
            "Download or export it again.") from None
    if not isinstance(obj, dict):
        raise CorruptCheckpointError(f"{name}: expected a dict of arrays, found {type(obj).__name__}")
    obj.pop("StructuredToParameterName@@", None)
    if any("UnpackBigParamInfor@@" in str(k) for k in obj):
        raise CorruptCheckpointError(f"{name}: split big-parameter checkpoints are not supported")
    out = {}
    for k, v in obj.items():
        if not (isinstance(v, np.ndarray) and v.dtype.kind in _NUMERIC_KINDS):
            what = f"an array of {v.dtype}" if isinstance(v, np.ndarray) else f"a {type(v).__name__}"
            raise CorruptCheckpointError(f"{name}: entry {k!r} is {what}, not a numeric numpy array")
        out[str(k)] = v
    declared = sum(v.nbytes for v in out.values())
    if declared > len(data):  # arrays that share memory (memo references) would multiply on conversion
        raise CorruptCheckpointError(f"{name} is refused: its arrays declare {declared} bytes, more than the "
                                     f"{len(data)} the file holds (arrays that share their data?)")
    return out


# ---------------------------------------------------------------------------------------------- writing

#: The causes of a failed write that :func:`atomic_open` reports against its destination.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def write_failure(e: BaseException) -> OSError | None:
    """The ``OSError`` with a :data:`WRITE_ERRNOS` cause behind ``e``: ``e`` itself, or one it was raised from or
    while handling (``torch.save`` turns a failed write into a ``RuntimeError`` that never says why)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError) and cur.errno in WRITE_ERRNOS:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)  # not past `from None`
    return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a uniquely named temporary file beside ``path`` for binary writing; when the block ends without
    an error it is flushed, fsynced and renamed over ``path``; otherwise it is removed and ``path`` untouched.

    A write that fails for a :data:`WRITE_ERRNOS` cause (a full disk, a file-size limit, a read-only file system,
    no permission), even inside ``torch.save``, is raised as that ``OSError`` with ``filename`` = ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except Exception as e:
        cause = write_failure(e)
        if cause is not None:
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- folder locks

#: The lock file :func:`lock_folder` creates in a folder.
LOCK_NAME = ".lock"


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock."""


def _lock_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(pid: object) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def lock_folder(folder: str | os.PathLike) -> Path:
    """Take ``folder``'s lock (``folder/.lock``, created exclusively, holding this process's pid and host).

    A lock left by a process that is no longer running on this host is stale: it is taken over, with a
    ``warning:`` line. Raises :class:`FolderInUseError` (one line naming the owner) if a live process, or one
    on another host, holds it. Returns the lock file's path, for :func:`unlock_folder`.
    """
    path = Path(folder) / LOCK_NAME
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _lock_owner(path)
            here = owner.get("host") == socket.gethostname()
            if (here and not _alive(owner.get("pid"))) or (not owner and _lock_age(path) > 10):
                print(f"warning: {path} was left by process {owner.get('pid', '?')}, which is no longer running; "
                      "taking it over", file=sys.stderr)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}"
            raise FolderInUseError(f"{folder} is in use by another run ({who} holds {path}); wait for it to finish, "
                                   f"or give another folder{'' if here else f' (if no run is using it, delete {path})'}"
                                   ) from None
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return path
    raise FolderInUseError(f"{folder} is in use by another run: its lock {path} was taken while this one started")


def _lock_age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def unlock_folder(lock: Path) -> None:
    """Release a lock :func:`lock_folder` took (only if this process still owns it)."""
    if _lock_owner(lock).get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
