"""Output folders: refuse to destroy inputs or other people's files, and one run per output at a time.

Every stage that writes a folder (CLI command and recipe stage alike) calls :func:`prepare_output` before it
writes anything, through the :func:`writes_output` decorator on its ``run`` function::

    @writes_output(lambda config, ctx: [config.input])
    def run_seeds(config, ctx): ...

:func:`prepare_output` checks, in order, and each failure is one :class:`~cerbero_hf.errors.InputError` (exit 2):

1. **Overlap.** The output folder must not be an input, nor lie inside one, nor contain one: writing it would
   replace the rows the run is reading (``generate seeds seeds`` used to delete the seed rows). ``--overwrite``
   does not lift this.
2. **A file.** The output must be a folder (or not exist yet).
3. **The lock.** It takes ``<output>/.cerbero-hf.lock`` (an exclusive ``flock`` holding the PID of the run): a
   second run on the same output stops at once, naming that PID, instead of sending every request twice. The lock
   is released when the run ends, however it ends; after a crash (even ``kill -9``) the kernel releases it, so the
   file left behind is stale and the next run takes it over.
4. **Ours.** An existing folder that holds anything must be one cerbero-hf wrote (resumed or replaced as before);
   a folder holding other files is refused unless ``overwrite`` (``--overwrite``) is given, and even then only
   the files the stage writes are replaced: nothing else in it is deleted.
5. **The same stage, the same settings.** A folder another stage wrote, or this stage with other settings, is
   refused unless ``overwrite`` (:mod:`cerbero_hf.stage_marker`, which records both in the folder).

A folder is *ours* when it holds any of (see :func:`ours`):

- a ``README.md`` card whose YAML ``tags`` include ``cerbero-hf`` (every dataset card ``io.save_hub_folder``
  writes, and the train stage's model card, written at every checkpoint),
- ``manifest.json`` with a ``stages`` mapping (a recipe's ``output_dir``),
- ``cerbero_train.json`` (a finished train run) or ``results.json`` with ``tasks`` (the evaluate stage),
- ``.score-partial/`` (scored chunks of an interrupted score run),
- ``.cerbero-hf-stage.json`` (the stage marker, :mod:`cerbero_hf.stage_marker`),
- ``.cerbero-hf.lock`` (a run of ours that stopped before it wrote anything).

An output folder the run created and left empty (the run failed before writing) is removed again.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from cerbero_hf import distributed, stage_marker
from cerbero_hf.errors import InputError

LOCK_NAME = ".cerbero-hf.lock"
TAG = "cerbero-hf"
MARKERS = ("README.md (tag cerbero-hf)", "manifest.json", "cerbero_train.json", "results.json", ".score-partial/",
           stage_marker.MARKER, LOCK_NAME)

_held: dict[Path, "OutputLock"] = {}  # real output folder -> the lock this process holds (re-entrant per process)
_held_guard = threading.Lock()


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _local_input(spec) -> Path | None:
    """The local path an input names (``NAME=PATH@WEIGHT`` corpus specs included), or None (a Hub id, unset)."""
    if spec is None or spec == "":
        return None
    text = str(spec)
    if not Path(text).exists() and "=" in text:  # a train corpus spec NAME=PATH[@WEIGHT]
        text = text.split("=", 1)[1]
        if not Path(text).exists() and "@" in text:
            text = text.rsplit("@", 1)[0]
    return _real(text) if Path(text).exists() else None


def check_overlap(output, inputs: Iterable = ()) -> None:
    """Raise :class:`InputError` when ``output`` is, is inside, or contains one of the local ``inputs``."""
    out = _real(output)
    for spec in inputs:
        inp = _local_input(spec)
        if inp is None:
            continue
        if out == inp:
            how = "is the input"
        elif inp in out.parents:
            how = "is inside the input"
        elif out in inp.parents:
            how = "contains the input"
        else:
            continue
        raise InputError(f"the output folder {how} {spec}: writing it would destroy the input; choose another "
                         "output folder", file=str(output))


def _card_tags(readme: Path) -> list:
    """The ``tags`` of a README's YAML header ([] when it has none or cannot be read)."""
    from cerbero_hf.hub_folder import card_header

    tags = card_header(readme.parent).get("tags")
    return tags if isinstance(tags, list) else [tags] if isinstance(tags, str) else []


def _json_keys(path: Path) -> set:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return set()
    return set(data) if isinstance(data, dict) else set()


def ours(folder) -> bool:
    """True when ``folder`` holds a marker of a cerbero-hf output (see the module docstring; a lock file left by
    an earlier run is the last marker, checked by :func:`foreign_entries`)."""
    folder = Path(folder)
    return ((folder / "README.md").is_file() and TAG in _card_tags(folder / "README.md")
            or "stages" in _json_keys(folder / "manifest.json")
            or (folder / "cerbero_train.json").is_file()
            or {"tasks", "model"} <= _json_keys(folder / "results.json")
            or (folder / ".score-partial").is_dir()
            or stage_marker.read(folder) is not None)


def foreign_entries(folder, *, had_lock: bool | None = None) -> list[str]:
    """The entries of an existing folder that is not ours (our lock file aside); [] when it is ours or empty.

    ``had_lock``: whether the lock file was there before this run took the lock (a lock file is a marker of
    ours only when an earlier run left it); default: whether it is there now.
    """
    folder = Path(folder)
    entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
    if had_lock is None:
        had_lock = (folder / LOCK_NAME).is_file()
    if not entries or had_lock or ours(folder):
        return []
    return entries


class OutputLock:
    """An exclusive lock on one output folder (``<folder>/.cerbero-hf.lock``); see the module docstring.

    ``flock`` on the lock file does the locking (the kernel drops it when the process dies); the file holds the
    PID for the message a second run prints. Re-entrant within one process.
    """

    def __init__(self, folder: Path, created: bool, label: str | None = None):
        self.folder = folder
        self.label = label or str(folder)  # the output as the user wrote it, for messages
        self.path = folder / LOCK_NAME
        self.created = created  # the run made the folder: remove it again if nothing was written
        self.fd: int | None = None
        self.depth = 0

    def acquire(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock, the other checks still run
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip()
                os.close(fd)
                who = f"PID {holder}" if holder.isdigit() else "another process"
                raise InputError(f"another cerbero-hf run ({who}) is writing this output folder: wait for it to "
                                 "finish, or stop it", file=self.label) from None
            try:  # the file may have been unlinked by the holder's release between our open and flock: retry
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still holding the flock (acquire re-checks the inode)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None
        if self.created:
            if [p.name for p in self.folder.iterdir()] == [stage_marker.MARKER]:
                (self.folder / stage_marker.MARKER).unlink()  # the run wrote nothing but the marker
            try:
                self.folder.rmdir()  # only when empty: the run failed before writing anything
            except OSError:
                pass

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        with _held_guard:
            self.depth -= 1
            if self.depth > 0:
                return
            _held.pop(self.folder, None)
        self.release()


def prepare_output(output, inputs: Iterable = (), *, overwrite: bool = False, stage: str | None = None,
                   settings: dict | None = None, rerun: bool = False) -> OutputLock:
    """Check ``output`` against ``inputs``, lock it, and check it is ours (see the module docstring).

    Returns the held :class:`OutputLock`; use it as a context manager (``with prepare_output(...):``), which
    releases it (and removes the folder again when this call created it and nothing was written).

    ``stage`` / ``settings`` / ``rerun``: who writes it (:func:`cerbero_hf.stage_marker.check`).

    Raises:
        InputError: ``output`` overlaps an input, is a file, is locked by another run, or holds files that
            cerbero-hf did not write, or another stage's output, or this stage's with other settings (without
            ``overwrite``).
    """
    folder = Path(output)
    check_overlap(folder, inputs)
    if folder.exists() and not folder.is_dir():
        raise InputError("the output exists and is a file, not a folder", file=str(output))
    with _held_guard:
        held = _held.get(_real(folder))
        if held is not None:  # this process already holds it (a stage inside a stage): nothing more to check
            held.depth += 1
            return held
    created = not folder.exists()
    had_lock = (folder / LOCK_NAME).is_file()  # left by an earlier run of ours (before we create ours)
    folder.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(_real(folder), created, str(output)).acquire()
    try:
        foreign = [] if overwrite else foreign_entries(folder, had_lock=had_lock)
    except OSError as err:
        lock.release()
        raise InputError(f"cannot read the output folder: {err.strerror}", file=str(output)) from None
    if foreign:
        lock.release()
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"the output folder holds files cerbero-hf did not write ({shown}): choose a new or empty "
                         "folder, or pass --overwrite to write into it anyway", file=str(output))
    if stage:
        try:
            if not overwrite:
                stage_marker.check(folder, stage, settings, rerun=rerun, label=str(output))
            stage_marker.write(folder, stage, settings)
        except InputError:
            lock.release()
            raise
    lock.depth = 1
    with _held_guard:
        _held[lock.folder] = lock
    return lock


def writes_output(inputs: Callable[..., Iterable] = lambda config, ctx: (), *,
                  output: Callable[..., object] = lambda config, ctx: ctx.output,
                  overwrite: Callable[..., bool] = lambda config, ctx: getattr(ctx, "overwrite", False),
                  same_settings: bool = True):
    """Decorate a stage's ``run(config, ctx)`` so that it runs under :func:`prepare_output`.

    ``inputs`` / ``output`` / ``overwrite`` are functions of the run's arguments: the local paths it reads (Hub
    ids and ``None`` are skipped), its output folder (default ``ctx.output``; ``None`` skips the check, leaving
    the run to report the missing output) and whether ``--overwrite`` was given (default ``ctx.overwrite``).
    The stage marker's stage is the function's name (``run_seeds``: ``seeds``), its settings the first argument's
    (compared unless ``same_settings`` is False).
    """
    def decorator(run: Callable) -> Callable:
        @functools.wraps(run)
        def guarded(*args, **kwargs):
            out = output(*args, **kwargs)
            if out is None or out == "":
                return run(*args, **kwargs)
            ctx = args[1] if len(args) > 1 else kwargs.get("ctx")
            opened = lambda: prepare_output(out, list(inputs(*args, **kwargs) or ()),  # noqa: E731
                                            overwrite=bool(overwrite(*args, **kwargs)),
                                            stage=run.__name__.removeprefix("run_"),
                                            settings=stage_marker.settings_of(args[0]) if args and same_settings else None,
                                            rerun=bool(getattr(ctx, "rerun", False)))
            with distributed.main_only(opened):  # under a launcher: the main process locks and checks, once
                return run(*args, **kwargs)
        return guarded
    return decorator


def result_paths(ctx, *pairs: tuple[str, str]) -> list:
    """The paths earlier stages recorded: ``(stage, result field)`` pairs read from ``ctx.inputs`` (None if unset)."""
    return [getattr(ctx.inputs.get(stage), name, None) for stage, name in pairs]
