# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The few bpf(2) commands the socket-LB tests need that bpftool (Debian's
7.1) does not offer: attaching a program to a cgroup with any flags
(BPF_F_PREORDER, BPF_F_BEFORE), detaching it, and asking a cgroup for its
programs in the order they run. Python standard library (ctypes) only.

    fd = obj_get("/sys/fs/bpf/x/prog")       # a pinned program
    attach(cg_fd, fd, CONNECT4, ALLOW_MULTI | PREORDER)
    query(cg_fd, CONNECT4, effective=True)   # program ids, in run order
    detach(cg_fd, fd, CONNECT4)
"""

import ctypes
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())

# enum bpf_cmd
OBJ_GET, PROG_ATTACH, PROG_DETACH, PROG_QUERY = 7, 8, 9, 16
# enum bpf_attach_type
CONNECT4, CONNECT6 = 10, 11
# attach flags (linux/bpf.h)
ALLOW_MULTI = 1 << 1
BEFORE = 1 << 3
PREORDER = 1 << 6
ID = 1 << 5  # relative_id names a program id (with BEFORE/AFTER)
QUERY_EFFECTIVE = 1 << 0

ATTR_SIZE = 144


def _bpf(cmd, attr):
    if _NR_BPF is None:
        raise OSError("bpf(2) number unknown on %s" % platform.machine())
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = _libc.syscall(_NR_BPF, cmd, buf, len(attr))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, "bpf(%d): %s" % (cmd, os.strerror(e)))
    return ret, bytearray(buf.raw)


def obj_get(path):
    p = ctypes.create_string_buffer(path.encode())
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("=Q", attr, 0, ctypes.addressof(p))
    fd, _ = _bpf(OBJ_GET, attr)
    return fd


def attach(cg_fd, prog_fd, attach_type, flags, relative_id=0):
    attr = bytearray(ATTR_SIZE)
    # target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd, relative_fd|id
    struct.pack_into("=IIIIII", attr, 0, cg_fd, prog_fd, attach_type, flags, 0, relative_id)
    _bpf(PROG_ATTACH, attr)


def detach(cg_fd, prog_fd, attach_type):
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("=III", attr, 0, cg_fd, prog_fd, attach_type)
    _bpf(PROG_DETACH, attr)


def query(cg_fd, attach_type, effective=False, room=256):
    ids = (ctypes.c_uint32 * room)()
    attr = bytearray(ATTR_SIZE)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("=IIII", attr, 0, cg_fd, attach_type, QUERY_EFFECTIVE if effective else 0, 0)
    struct.pack_into("=QI", attr, 16, ctypes.addressof(ids), room)
    _, out = _bpf(PROG_QUERY, attr)
    cnt = struct.unpack_from("=I", out, 24)[0]
    return list(ids[:cnt])


def prog_id(prog_fd):
    """The id of a program, from /proc/self/fdinfo."""
    with open("/proc/self/fdinfo/%d" % prog_fd) as f:
        for line in f:
            if line.startswith("prog_id:"):
                return int(line.split()[1])
    raise OSError("fd %d is not a BPF program" % prog_fd)
