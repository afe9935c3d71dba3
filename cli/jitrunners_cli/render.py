"""Output: JSON on request, otherwise plain tables that fit 80 columns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

WIDTH = 80


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock(value: datetime | None) -> str:
    """12:34:56.789 (UTC)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def duration(seconds: float | None) -> str:
    """A human duration: 0.4 s, 12 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(
    rows: Sequence[Sequence[Any]], *, indent: int = 0, right: Sequence[int] = ()
) -> list[str]:
    """Rows as aligned columns (the first row a header); the last column is clipped so that
    every line fits WIDTH."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            is_last = i == len(row) - 1
            if is_last:
                parts.append(cell.rjust(widths[i]) if i in right else cell)
            else:
                parts.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        line = " " * indent + "  ".join(parts)
        lines.append(clip(line.rstrip(), WIDTH))
    return lines


def field_line(label: str, value: str, label_width: int = 13) -> str:
    """`label        value`, the value clipped to the screen."""
    return clip(f"{label:<{label_width}}{value}", WIDTH)
