"""Which demo folders of `rendered/` changed since the last look, without looking at them all.

Owns change detection for the GitOps stand-in, which syncs before every API answer:
statting every folder on every request would make each request cost the whole tree.
On Linux it asks the kernel (inotify(7)): one watch on the source folder (for
`rendered/` itself appearing, going or being replaced), one on `rendered/` (demo
folders created, deleted, moved) and one per demo folder (files written, created,
deleted, moved). The kernel queues an event before the write that causes it returns,
so a request that follows a write always sees it: the answers stay deterministic.
Where inotify is missing or refuses (another OS, the instance or watch limits, a queue
overflow), `changed()` answers None, "look at everything", and the caller scans as
before. Imports the standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
import weakref
from pathlib import Path

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_ENTRIES = _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO
_SELF = _IN_DELETE_SELF | _IN_MOVE_SELF
_FOLDER_MASK = _ENTRIES | _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _SELF | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class TreeWatch:
    """`changed()`: the demo ids whose folders may have changed since the last call, or None."""

    def __init__(self, rendered: Path) -> None:
        self.rendered = Path(rendered)
        self._libc = _libc()
        self._fd = -1
        self._folders: dict[int, str] = {}  # wd of a demo folder -> demo id
        self._root_wd = -1
        self._source_wd = -1
        self._finalizer: weakref.finalize[..., TreeWatch] | None = None

    @property
    def watching(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._fd, self._folders, self._root_wd, self._source_wd = -1, {}, -1, -1

    def changed(self) -> set[str] | None:
        if not self.watching:
            self._start()
            return None  # watches are in place before the caller's scan reads anything
        changed: set[str] = set()
        for wd, mask, name in self._events():
            if mask & _IN_Q_OVERFLOW:
                return None  # events were lost: the watches hold, the caller scans once
            if wd == self._source_wd:
                if name == self.rendered.name or mask & _SELF:
                    self._restart()
                    return None
            elif wd == self._root_wd:
                if mask & _SELF:
                    self._restart()
                    return None
                if name and mask & (_IN_CREATE | _IN_MOVED_TO) and not self._watch_folder(name):
                    return None  # self._start() failed over to scanning
                if name:
                    changed.add(name)
            elif wd in self._folders:
                changed.add(self._folders[wd])
                if mask & _IN_IGNORED:
                    del self._folders[wd]  # the folder is gone; its id is looked at
        return changed if self.watching else None

    # --- inotify --------------------------------------------------------------------------

    def _start(self) -> None:
        if self._libc is None:
            return
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return  # EMFILE and friends: scan instead
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)
        self._source_wd = self._add(self.rendered.parent, _ENTRIES | _SELF | _IN_ONLYDIR)
        if self._source_wd < 0:
            self.close()
            return
        if not self.rendered.is_dir():
            return  # only the source is watched, for rendered/ to appear
        self._root_wd = self._add(self.rendered, _ENTRIES | _SELF | _IN_ONLYDIR)
        if self._root_wd < 0:
            self.close()
            return
        with os.scandir(self.rendered) as entries:
            names = [e.name for e in entries if e.is_dir()]
        for name in names:
            if not self._watch_folder(name):
                return

    def _restart(self) -> None:
        self.close()
        self._start()

    def _watch_folder(self, name: str) -> bool:
        """Watch rendered/<name>; False if inotify gave up (then everything is scanned)."""
        wd = self._add(self.rendered / name, _FOLDER_MASK)
        if wd >= 0:
            self._folders[wd] = name
            return True
        if ctypes.get_errno() in {errno.ENOENT, errno.ENOTDIR}:
            return True  # gone again, or a file: the caller's look tells
        self.close()  # ENOSPC (the watch limit) and the like: scan from now on
        return False

    def _add(self, path: Path, mask: int) -> int:
        assert self._libc is not None
        return int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))

    def _events(self) -> list[tuple[int, int, str]]:
        events: list[tuple[int, int, str]] = []
        while self.watching:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(chunk):
                wd, mask, _, size = _EVENT.unpack_from(chunk, offset)
                offset += _EVENT.size
                name = chunk[offset : offset + size].rstrip(b"\0").decode(errors="replace")
                offset += size
                events.append((wd, mask, name))
        return events
