"""What counts as an integer and as a number in a config value: shared by the grid's schema and the
registries' argument checks (a freeze strategy's `{last: l}`), which the schema imports."""

from __future__ import annotations

import math
from typing import Any

INT64_MAX = 2**63 - 1  # every int lands in an int64 result column


def is_int(v: Any) -> bool:
    """An integer that fits a result column (bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool) and -INT64_MAX <= v <= INT64_MAX


def is_number(v: Any) -> bool:
    """A finite number: NaN and infinities pass every comparison a check makes, so no float field takes them."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
