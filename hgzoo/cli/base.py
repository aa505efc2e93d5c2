"""What every command does with a failure: one line on stderr, and an exit code that says whose it is.

* ``0``: done;
* ``1``: the input was good, and a check failed or the machine stopped the run (a verification below its
  bound, a diverging loss, a write that failed for a full disk, a file-size limit or a read-only file
  system: one line naming the file and the cause);
* ``2``: bad input: a flag, a model name, or a file the user gave or pointed to (missing, unreadable,
  corrupt, unsafe, mismatched, a checkpoint that cannot be resumed, an image that would not decode), wherever
  it is found: before any work, or during it (an image in a dataset without ``--skip-bad-images``; ``predict``
  still prints what it classified);
* ``130``: interrupted (Ctrl-C).

A traceback is kept for what is none of these: a bug, which deserves one.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence

__all__ = ["BadInput", "RunFailed", "guarded_main", "one_line", "positive_int", "non_negative_int",
           "positive_float", "finite_float", "fraction", "writable_file", "set_max_image_pixels",
           "add_weights_argument", "add_runtime_arguments"]


class BadInput(ValueError):
    """Bad input found by a command's own checks: exit 2."""


class RunFailed(RuntimeError):
    """The command ran and a check failed: exit 1."""


def one_line(e: BaseException) -> str:
    """The exception's message on one line (a multi-line message's lines joined by ``; ``)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(e).__name__


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from .._files import CheckpointMismatchError, CorruptCheckpointError, UnsafePickleError
    from .._registry import UnknownModelError
    from ..data.transforms import ImageDecodeError

    return (BadInput, UnknownModelError, UnsafePickleError, CorruptCheckpointError, CheckpointMismatchError,
            ImageDecodeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def guarded_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
                 bad_input: tuple[type[BaseException], ...] = (), failed: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main(argv)`` and turn the failures a user can cause into one line and an exit code.

    ``bad_input`` and ``failed`` add a command's own exception types to exit 2 and exit 1. Warnings print as
    one ``warning: ...`` line each.
    """
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RunFailed as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        written = _write_failure(e)
        if written is not None:
            print(f"error: {written[0]}", file=sys.stderr)
            return written[1]
        if isinstance(e, _bad_input_types() + bad_input):
            print(f"error: {one_line(e)}", file=sys.stderr)
            return 2
        if failed and isinstance(e, failed):
            print(f"error: {one_line(e)}", file=sys.stderr)
            return 1
        raise


_WRITE_CAUSES = {errno.ENOSPC: ("no space left on the device", "; free some space and run again"),
                 errno.EDQUOT: ("the disk quota is exceeded", "; free some space and run again"),
                 errno.EFBIG: ("the file would exceed the file-size limit", " (ulimit -f); raise it and run again"),
                 errno.EROFS: ("the file system is read-only", "; give a writable place"),
                 errno.EACCES: ("permission denied", "; check its permissions or give another path"),
                 errno.EPERM: ("operation not permitted", "; check its permissions or give another path")}


def _write_failure(e: BaseException) -> tuple[str, int] | None:
    """A failed write behind ``e`` as (one line naming the file and the cause, exit code), else None.

    No space, a file-size limit or a read-only file system stop a run that was under way: exit 1. No permission
    is a path the user gave that cannot be used: exit 2 (as a missing file is)."""
    from .._files import write_failure

    cause = write_failure(e)
    if cause is None:
        return None
    what, fix = _WRITE_CAUSES[cause.errno]
    name = str(cause.filename) if cause.filename else "a file"
    if cause.errno in (errno.EACCES, errno.EPERM):  # reading or writing: say which file, not which way
        return f"{name}: {what} ({errno.errorcode[cause.errno]}){fix}", 2
    return f"cannot write {name}: {what} ({errno.errorcode[cause.errno]}){fix}", 1


# ---------------------------------------------------------------------------------------------- argparse types

def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole_number(text, 0)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


def writable_file(path: str, flag: str) -> None:
    """Raise :class:`BadInput` now, before any work, if ``path`` could not be written at the end."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BadInput(f"{flag} {path} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise BadInput(f"{flag} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        raise BadInput(f"{flag} {path}: the folder {folder} is not writable ("
                       f"{'the file system is read-only, EROFS' if read_only else 'permission denied, EACCES'})")


def set_max_image_pixels(value: int | None) -> None:
    """``--max-image-pixels``: the decoded-image limit for this process and its data-loader workers."""
    if value is not None:
        os.environ["HGZOO_MAX_IMAGE_PIXELS"] = str(value)


# ---------------------------------------------------------------------------------------------- shared flags

def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """``--weights model|ema`` (and ``--ema``, the same as ``--weights ema``): which weights of a checkpoint that
    holds both (train.py's with EMA, timm's ``state_dict_ema``) a command uses."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", choices=["model", "ema"], default="model",
                       help="a train.py checkpoint's model weights (default) or its EMA weights")
    group.add_argument("--ema", "--use-ema", dest="weights", action="store_const", const="ema",
                       help="the same as --weights ema (--use-ema: timm's spelling; a file without EMA weights is "
                            "refused, where timm falls back to the model weights)")


def add_runtime_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What runs the model (predict and validate): ``--backend``, ``--precision``, ``--calibration``,
    ``--deployed``, ``--save-deployed``, ``--threads``."""
    from ..deploy.runner import BACKENDS, RUN_PRECISIONS

    p.add_argument("--backend", choices=BACKENDS, help="eager (default), reparam, compile (torch.compile), "
                                                       "torchscript (torch.jit.script), onnxruntime or openvino "
                                                       "(export, verify, then run the file)")
    p.add_argument("--precision", choices=RUN_PRECISIONS, help="fp32 (default), bf16 or int8 (runtimes only)")
    p.add_argument("--calibration", metavar="DIR_OR_LIST", help="real images for int8 calibration (required for int8)")
    p.add_argument("--deployed", metavar="FILE", help="run this exported .onnx / .xml file instead of exporting")
    p.add_argument("--save-deployed", metavar="FILE", help="keep the file exported for this run (.onnx or .xml)")
    p.add_argument("--threads", type=positive_int, help="inference threads (default: every core)")
