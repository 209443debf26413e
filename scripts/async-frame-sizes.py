#!/usr/bin/env python3
"""Prints the async frame size of every async function in a Swift binary.

    scripts/async-frame-sizes.py BINARY [SUBSTRING]

Each async function has an "async function pointer" record (its mangled
name ends in "Tu"): a 32-bit relative pointer to the code, then the size of
the context (frame) the Swift task allocator hands the function on every
call. A suspended task holds the frames of every function on its await
chain; once they pass the allocator's first slab (about 980 bytes) each
task takes a second 1 KiB slab, which is how a sleeping Curio task once grew
from 1.87 to 2.87 KiB (README, "Benchmarks"). Lines are "size  demangled
name", smallest first, filtered by SUBSTRING when given. Needs binutils
(nm, readelf) and `swift demangle`.
"""
import struct
import subprocess
import sys


def sections(binary):
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 6 and fields[0].startswith("[") and fields[0] != "[Nr]":
            try:
                found.append((int(fields[3], 16), int(fields[4], 16), int(fields[5], 16), fields[1]))
            except ValueError:
                continue
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, pattern = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    secs = sections(binary)
    data = open(binary, "rb").read()

    def read8(addr):
        for start, offset, size, name in secs:
            if start <= addr < start + size and name != ".bss":
                at = offset + addr - start
                return data[at:at + 8]
        return None

    symbols = {}
    for line in subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2].endswith("Tu"):
            symbols[fields[2]] = int(fields[0], 16)
    names = list(symbols)
    demangled = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names),
                               capture_output=True, text=True, check=True).stdout.splitlines()
    rows = []
    for mangled, readable in zip(names, demangled):
        raw = read8(symbols[mangled])
        if raw is None or len(raw) < 8 or pattern not in readable:
            continue
        _, size = struct.unpack("<iI", raw)
        rows.append((size, readable.removeprefix("async function pointer to ")))
    for size, readable in sorted(rows):
        print(f"{size:6d}  {readable}")


if __name__ == "__main__":
    main()
