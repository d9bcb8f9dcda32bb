"""Atomic writes: write beside the target under a temp name, then rename over it.

A reader (or a resumed run) sees the old file or the whole new one, never half of one; a write
that fails (a full disk, an exception in the writer) leaves no temp file behind. The temp name is
`.NAME.tmp` in the target's folder (same filesystem, so the rename is atomic); scorer runs clean
up `.*.tmp` left by a killed process on that pattern.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_text_atomic(folder / "a.txt", "done").read_text()
'done'
>>> sorted(p.name for p in folder.iterdir())
['a.txt']
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def temp_path(path: Path) -> Path:
    """Where `path` is written before its rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield the temp path for `path`; when the block ends without an exception, rename it over
    `path`. A stale temp (file or symlink) from a killed writer is removed first, and the temp
    is removed whatever happens."""
    path = Path(path)
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, encoding: str = "utf-8", errors: str = "strict") -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, errors=errors) as fh:
            fh.write(text)
    return Path(path)
