"""The benchmark's figures as Markdown tables."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row))  # every row's keys, first seen first
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(_cell(row.get(key, "")) for key in keys) + " |" for row in rows] + [""]


def markdown(results: dict[str, Any]) -> str:
    command = "python -m bench.run" + (" --quick" if results["quick"] else "")
    lines = [f"Measured {results['date']} on {results['machine']} (`{command}`).", ""]
    for section, value in results["sections"].items():
        lines += [f"**{section}**", ""]
        if isinstance(value, dict):  # scalars, then each list of rows as its own table
            lines += markdown_table([{k: v for k, v in value.items() if not isinstance(v, list)}])
            for rows in (v for v in value.values() if isinstance(v, list)):
                lines += markdown_table(rows)
        else:
            lines += markdown_table(value)
    return "\n".join(lines)
