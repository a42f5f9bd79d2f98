"""A per-file digest manifest of a model artifact (a file or a directory), like model-transparency's.

Each file is named by its path relative to the artifact (`/`-separated; a single file by its
own name) with its sha256; the list is sorted by name. The model's digest is the sha256 of the
manifest's canonical JSON, so renaming, adding or removing a file changes it too. Symlinks
are refused: a link can point outside the artifact and change without the artifact changing.

Example:
    >>> (tmp / "m").mkdir(); (tmp / "m" / "w.bin").write_bytes(b"abc")   # doctest: +SKIP
    >>> digest_tree(tmp / "m")                                            # doctest: +SKIP
    [{'name': 'w.bin', 'digest': {'sha256': 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'}}]
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..audit.canonical import canonical, sha256_hex
from ..errors import ConfigError

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def digest_tree(path: str | os.PathLike) -> list[dict]:
    """The manifest of a model file or directory: `[{"name", "digest": {"sha256"}}]`, sorted by name."""
    root = Path(path)
    if root.is_symlink():
        raise ConfigError(f"{root} is a symbolic link; give the model's real file or folder")
    if root.is_file():
        return [{"name": root.name, "digest": {"sha256": file_sha256(root)}}]
    if not root.is_dir():
        raise ConfigError(f"model {root} does not exist; give a model file or folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise ConfigError(f"model file {rel} is a symbolic link; copy the file it points to into the model")
            out.append({"name": rel, "digest": {"sha256": file_sha256(full)}})
    if not out:
        raise ConfigError(f"model folder {root} holds no files")
    return sorted(out, key=lambda s: s["name"])


def manifest_digest(subjects: list[dict]) -> str:
    """`sha256:` + the digest of a manifest (what `audit model sha256:...` looks a model up by)."""
    return "sha256:" + sha256_hex(canonical([{"name": s["name"], "sha256": s["digest"]["sha256"]}
                                             for s in subjects]))
