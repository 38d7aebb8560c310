"""The dashboard's roots: folder ids in URLs, and files served only from inside a root.

A folder's id is ``<root index>/<path relative to that root>`` (``0/compare-x/runs/full``), so a
URL never holds an absolute path. Resolving an id refuses absolute paths, ``..`` and symlinks that
lead out of the root: each is answered 404, like a folder that does not exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["NotInRoots", "Roots"]


class NotInRoots(LookupError):
    """The id or path names nothing inside the dashboard's roots (answered 404)."""


@dataclass(frozen=True)
class Roots:
    """The folders the dashboard lists and serves (resolved once, at start).

    Example:
        >>> roots = Roots.of(["runs"])
        >>> roots.folder("0/efficientnet_lite0-full-20261127-120000")  # doctest: +SKIP
        PosixPath('/home/me/runs/efficientnet_lite0-full-20261127-120000')
    """

    paths: tuple[Path, ...]

    @classmethod
    def of(cls, roots: list[str | Path] | tuple[str | Path, ...]) -> Roots:
        return cls(tuple(Path(r).expanduser().resolve() for r in roots))

    @property
    def jobs_root(self) -> Path:
        """Where runs started from the dashboard are written: the first root."""
        return self.paths[0]

    def id_of(self, folder: Path, real_parents: dict[Path, Path] | None = None) -> str:
        """The id of a folder inside a root (``NotInRoots`` otherwise).

        ``real_parents``: resolved parent folders, shared by the calls of one listing, so that
        1,000 runs in one folder resolve it once (then one link test each), not 1,000 times.
        """
        folder = _resolved(Path(folder), real_parents)
        for index, root in enumerate(self.paths):
            if folder == root or folder.is_relative_to(root):
                relative = folder.relative_to(root).as_posix()
                return f"{index}/{relative}" if relative != "." else str(index)
        raise NotInRoots(str(folder))

    def folder(self, folder_id: str) -> Path:
        """The folder an id names: an existing directory inside its root."""
        path = self._inside(folder_id)
        if not path.is_dir():
            raise NotInRoots(folder_id)
        return path

    def file(self, folder_id: str, name: str) -> Path:
        """A regular file inside a folder of a root (``name`` may hold sub-folders)."""
        folder = self.folder(folder_id)
        path = self._checked(folder, name, self._root_of(folder_id))
        if not path.is_file():
            raise NotInRoots(f"{folder_id}/{name}")
        return path

    def _root_of(self, folder_id: str) -> Path:
        head = folder_id.split("/", 1)[0]
        if not head.isdigit() or int(head) >= len(self.paths):
            raise NotInRoots(folder_id)
        return self.paths[int(head)]

    def _inside(self, folder_id: str) -> Path:
        root = self._root_of(folder_id)
        rest = folder_id.split("/", 1)[1] if "/" in folder_id else ""
        return self._checked(root, rest, root)

    @staticmethod
    def _checked(base: Path, relative: str, root: Path) -> Path:
        """``base/relative`` resolved (symlinks followed), refused unless it stays inside ``root``."""
        parts = PurePosixPath(relative).parts
        if relative.startswith(("/", "\\")) or "\\" in relative or ".." in parts or any(":" in p for p in parts):
            raise NotInRoots(relative)
        path = (base / relative).resolve()
        if path != root and not path.is_relative_to(root):
            raise NotInRoots(relative)
        return path


def _resolved(folder: Path, real_parents: dict[Path, Path] | None) -> Path:
    """``folder.resolve()``, with its parent's resolution taken from (and added to) ``real_parents``."""
    if real_parents is None or folder.name in ("", ".", "..") or os.path.islink(folder):
        return folder.resolve()
    parent = real_parents.get(folder.parent)
    if parent is None:
        parent = real_parents[folder.parent] = folder.parent.resolve()
    return parent / folder.name
