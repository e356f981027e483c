"""Writing a command's outputs so that they never replace an input, and never leave half a file behind.

``check_output`` runs before any work: an output that is one of the inputs (the same path, a link to it, a hard
link), a file where a folder is needed or the reverse, or a folder that cannot be created is one line.
``written_atomically`` writes into a temporary file in the target's own folder and renames it over the target only
once complete, so a full disk or a killed process leaves the previous file intact and no truncated one (a rename
within a folder is atomic; a temporary file elsewhere would be copied across devices, which is not).
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from src.utils.errors import UserInputError


def same_file(a: Path, b: Path) -> bool:
    """True when both paths name one file (resolved links, hard links, ``./x`` vs ``x``)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def make_folder(folder: Path, what: str = "output folder") -> Path:
    """``mkdir -p`` with one line for a file in the way, a missing permission or a read-only disk."""
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserInputError(f"cannot create {what} {folder}: {parent} is a file, not a folder; choose another "
                                 "path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"cannot create {what} {folder} ({e.strerror or e}); choose a writable path") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {folder} is not writable; choose a writable path")
    return folder


def check_output(output: str | os.PathLike, inputs: dict[str, Optional[str | os.PathLike]], folder: bool = False,
                 writes: Sequence[str] = (), flag: str = "--output") -> Path:
    """The output path, checked before any work is done.

    inputs: flag -> path of what the command reads (``{"--input": ..., "--ckpt_path": ...}``); none may be
    overwritten. folder: the output is a folder the command fills with ``writes`` (file names); else one file.
    """
    out = Path(output).expanduser()
    targets = [out / name for name in writes] if folder else [out]
    for name, given in inputs.items():
        if not given:
            continue
        source = Path(given).expanduser()
        for target in targets:
            if same_file(target, source):
                raise UserInputError(f"{flag} {output} would overwrite {name} {given}; write the output elsewhere")
        if folder and same_file(out, source):
            raise UserInputError(f"{flag} {output} is {name} {given}; give a new folder for the output")
    if folder:
        if out.exists() and not out.is_dir():
            raise UserInputError(f"{flag} {out} is a file; give a folder to write {', '.join(writes)} into")
        make_folder(out, f"{flag} folder")
        for target in targets:
            if target.is_dir():
                raise UserInputError(f"{flag} {out} holds a folder named {target.name}; remove it or choose another "
                                     "folder")
    else:
        if out.is_dir():
            raise UserInputError(f"{flag} {out} is a folder; give a file name, e.g. {out / 'output'}")
        if out.exists() and not out.is_file():  # a device or a pipe (/dev/stdout): its folder is not written
            return out
        make_folder(out.parent, f"{flag} folder")
        if out.exists() and not os.access(out, os.W_OK):
            raise UserInputError(f"{flag} {out} is read-only; choose another path or make it writable")
    return out


@contextmanager
def written_atomically(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write to; on success it replaces ``path`` in one rename.

    Any failure (a full disk, a missing permission, an exception of the writer) removes the temporary file and
    leaves ``path`` as it was; an ``OSError`` becomes one ``UserInputError`` line.
    """
    target = Path(path)
    if target.exists() and not target.is_file():  # a device or a pipe (/dev/stdout): written in place
        yield target
        return
    if target.is_symlink():  # a link to a file: write where it points (replacing the link would cut it)
        target = target.resolve()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:  # created here with the user's umask (mkstemp would make it private to the owner)
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as e:
        raise UserInputError(f"cannot write {what} {target} ({e.strerror or e}); choose a writable folder") from None
    try:
        yield temporary
        handle = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(handle)  # the bytes reach the disk before the name points at them
        finally:
            os.close(handle)
        os.replace(temporary, target)
    except OSError as e:
        raise UserInputError(f"could not write {what} {target} ({e.strerror or e}); nothing was replaced: free some "
                             "space or choose another folder") from None
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def staged_folder(folder: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield an empty hidden folder inside ``folder`` (same disk: renames stay atomic) to write several files into;
    on success each is renamed into ``folder``, replacing its namesake. A failure on the way leaves the files of
    ``folder`` untouched."""
    target = Path(folder)
    staging = target / f".staging.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        staging.mkdir()
        yield staging
        for item in sorted(staging.iterdir()):
            os.replace(item, target / item.name)
    except OSError as e:
        raise UserInputError(f"could not write {what} into {target} ({e.strerror or e}); nothing in it was replaced: "
                             "free some space or choose another folder") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Remove what ``written_atomically`` and ``staged_folder`` left in ``folder`` when their process was killed
    (kill -9, power loss): their names carry the writer's process id, and that process is gone."""
    for leftover in Path(folder).glob(".*.tmp"):
        parts = leftover.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running: its file, not ours to touch
        except ProcessLookupError:
            pass
        except OSError:
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
