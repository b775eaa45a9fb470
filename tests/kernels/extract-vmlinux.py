#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Extract the ELF vmlinux from an x86 bzImage (vmlinuz).

    extract-vmlinux.py VMLINUZ OUT

qemu boots an ELF vmlinux through its PVH entry point, which is faster under
TCG than the bzImage's real-mode setup and in-guest decompression. Same idea
as the kernel tree's scripts/extract-vmlinux: find the compressed payload and
decompress it. The boot protocol (>= 2.08) says where the payload is
(payload_offset/payload_length, relative to the protected-mode code); the
last 4 bytes of the payload are the decompressed size, not compressed data.
If the header does not say, scan for a known magic as extract-vmlinux does.
"""

import lzma
import struct
import subprocess
import sys
import zlib

ELF_MAGIC = b"\x7fELF"
# magic -> name; the order matters only for the fallback scan.
MAGICS = [
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
]


def decompress(kind, data):
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "zstd":
        # No zstd in the Python standard library; the zstd CLI rejects
        # trailing bytes, which is why from_header() drops the size field.
        p = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
        if p.returncode != 0:
            raise ValueError("zstd: " + p.stderr.decode(errors="replace").strip())
        return p.stdout
    raise ValueError("unknown compression " + kind)


def from_header(img):
    if len(img) < 0x250 or img[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", img, 0x206)[0]
    if version < 0x208:
        return None
    setup_sects = img[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    off, length = struct.unpack_from("<II", img, 0x248)
    payload = img[pm_start + off : pm_start + off + length]
    for magic, kind in MAGICS:
        if payload.startswith(magic):
            return kind, payload[:-4]
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        img = f.read()
    tries = []
    hit = from_header(img)
    if hit:
        tries.append(hit)
    for magic, kind in MAGICS:  # fallback: every occurrence of every magic
        pos = img.find(magic)
        while pos >= 0:
            tries.append((kind, img[pos:]))
            pos = img.find(magic, pos + 1)
    errors = []
    for kind, data in tries:
        try:
            out = decompress(kind, data)
        except (ValueError, lzma.LZMAError, zlib.error, EOFError) as e:
            errors.append("%s: %s" % (kind, e))
            continue
        if out.startswith(ELF_MAGIC):
            with open(sys.argv[2], "wb") as f:
                f.write(out)
            print("extract-vmlinux: %s payload, %d -> %d bytes" % (kind, len(data), len(out)))
            return 0
    print("extract-vmlinux: no ELF vmlinux found in %s (%s)" % (sys.argv[1], "; ".join(errors[:3]) or "no payload"),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
