"""Numbers checked against the field they are written into, so nothing is truncated silently.

A device-tree `reg` or `memory` value is cut into 32-bit cells (`#address-cells`/`#size-cells`
of the node's parent, 2 + 2 in the /chosen nodes we make); a legacy uImage header holds 32-bit
load and entry addresses (U-Boot include/image.h); `fpga load` hands the size to the FPGA
driver as 32 bits (ZynqMP's PM_FPGA_LOAD call takes u32 arguments). A value that does not fit
is a user error naming its key, never a masked number.
"""

from __future__ import annotations

from ibtasks.errors import UserError, hex_and_dec

U32_LIMIT = 1 << 32


def to_cells(value: int, cells: int, key: str, what: str, where: str | None = None
             ) -> tuple[int, ...]:
    """`value` as `cells` 32-bit cells, most significant first (as in `reg`).

    Raises UserError `KEY: 0x... does not fit <what> (N cells, 32*N bits)` when it is negative
    or needs more bits; `where` is the config place printed before the key, if known.
    """
    if value < 0 or value >> (32 * cells):
        raise UserError(f"{key}: {value:#x} does not fit {what} ({cells} cells, "
                        f"{32 * cells} bits)", where)
    return tuple((value >> (32 * (cells - 1 - i))) & 0xFFFFFFFF for i in range(cells))


def check_u32(value: int, key: str, what: str, where: str | None = None) -> int:
    """`value` unchanged if it fits a 32-bit field described by `what`; else UserError."""
    if not 0 <= value < U32_LIMIT:
        raise UserError(f"{key}: {hex_and_dec(value)} does not fit {what} (32 bits)", where)
    return value
