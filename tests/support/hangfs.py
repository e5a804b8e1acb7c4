#!/usr/bin/env python3
"""A FUSE file system that passes everything through to a folder, and hangs on request, as a
network mount does when its server goes away: while the file HANG exists, every call on the
mount blocks until it is removed.

Usage: hangfs.py BACKING MOUNTPOINT HANG
Runs in the foreground until unmounted (fusermount -u MOUNTPOINT) or killed.
"""

import errno
import os
import sys
import time

from fuse import FUSE, FuseOSError, Operations


class HangFS(Operations):
    def __init__(self, root, hang):
        self.root = root
        self.hang = hang

    def _wait(self):
        while os.path.exists(self.hang):
            time.sleep(0.05)

    def _path(self, path):
        self._wait()
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._path(path))
        except OSError as e:
            raise FuseOSError(e.errno)
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def open(self, path, flags):
        try:
            return os.open(self._path(path), flags)
        except OSError as e:
            raise FuseOSError(e.errno)

    def read(self, path, size, offset, fh):
        self._wait()
        os.lseek(fh, offset, os.SEEK_SET)
        return os.read(fh, size)

    def release(self, path, fh):
        return os.close(fh)

    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)


if __name__ == "__main__":
    backing, mountpoint, hang = sys.argv[1:4]
    # Not cached by the kernel: every stat and read reaches this process, as with NFS's
    # revalidation.
    FUSE(HangFS(backing, hang), mountpoint, foreground=True, nothreads=False, direct_io=True,
         attr_timeout=0, entry_timeout=0, allow_other=True)
