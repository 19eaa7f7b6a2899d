"""Apply a boot script's `fdt` commands to a DTB with the real `fdtput`, as U-Boot would.

Used to check that our edited DTB holds what U-Boot makes of our script, and that our script
means what the seed's does. Only the commands ImageBuilder emits are understood.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path


def fdt_commands(script: str) -> list[list[str]]:
    """The `fdt mknod`/`fdt set` commands of a script, split into words."""
    commands = []
    for line in script.splitlines():
        words = shlex.split(line.replace("\\#", "#"))
        if words[:2] in (["fdt", "mknod"], ["fdt", "set"]):
            commands.append(words)
    return commands


def apply_with_fdtput(dtb: Path, script: str) -> None:
    """Run each `fdt` command of `script` on `dtb` in place with fdtput."""
    for words in fdt_commands(script):
        if words[1] == "mknod":
            subprocess.run(["fdtput", "-c", str(dtb), f"{words[2].rstrip('/')}/{words[3]}"],
                           check=True)
            continue
        node, prop, values = words[2], words[3], words[4:]
        joined = " ".join(values)
        if joined.startswith("<"):
            cells = [str(int(c, 0)) for c in re.findall(r"[0-9a-fA-Fx]+", joined)]
            subprocess.run(["fdtput", "-t", "u", str(dtb), node, prop, *cells], check=True)
        else:
            subprocess.run(["fdtput", "-t", "s", str(dtb), node, prop, *values], check=True)


def dts_of(dtb: Path) -> str:
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], check=True,
                          capture_output=True, text=True).stdout


STRING_PROPS = ("compatible", "bootargs", "xen,xen-bootargs", "xen,dom0-bootargs", "xen,enhanced",
                "llc-colors", "passthrough", "xen,shm-id", "cpupool-sched", "hard-affinity")


def chosen_meaning(dtb: Path) -> dict[str, dict[str, object]]:
    """/chosen as {node kind: {property: value}}, independent of node naming and cell format.

    Nodes are keyed by what they are (`dom0`, `dom0-ramdisk`, `domU0`, `domU0/kernel`...), so the
    seed's `module0x41000000` and our `module@41000000` compare equal when they mean the same.
    """
    def get(path: str, prop: str, kind: str) -> object:
        out = subprocess.run(["fdtget", "-t", kind, str(dtb), path, prop], check=True,
                             capture_output=True, text=True).stdout.strip()
        return [int(x, 16) for x in out.split()] if kind == "x" else out

    def props(path: str) -> list[str]:
        return subprocess.run(["fdtget", "-p", str(dtb), path], check=True, capture_output=True,
                              text=True).stdout.split()

    def children(path: str) -> list[str]:
        return subprocess.run(["fdtget", "-l", str(dtb), path], check=True,
                              capture_output=True, text=True).stdout.split()

    def node_meaning(path: str) -> dict[str, object]:
        found: dict[str, object] = {}
        for prop in props(path):
            if prop in STRING_PROPS:
                value = get(path, prop, "s")
                if prop == "compatible":
                    # Later Xen also accepts "multiboot,module"; it adds no meaning here.
                    value = " ".join(w for w in str(value).split() if w != "multiboot,module")
                found[prop] = value
            else:
                cells = get(path, prop, "x")
                if prop in ("reg", "memory") and isinstance(cells, list):
                    # Two-cell numbers: compare the 64-bit values.
                    cells = [(cells[i] << 32) | cells[i + 1] for i in range(0, len(cells), 2)]
                found[prop] = cells
        return found

    meaning: dict[str, dict[str, object]] = {"/chosen": node_meaning("/chosen")}
    for child in children("/chosen"):
        kind = child.split("@")[0]
        meaning[kind] = node_meaning(f"/chosen/{child}")
        for module in children(f"/chosen/{child}"):
            info = node_meaning(f"/chosen/{child}/{module}")
            role = str(info.get("compatible", "")).split()[0]
            meaning[f"{kind}/{role}"] = info
    return meaning
