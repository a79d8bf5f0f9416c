"""The benchmark's figures as Markdown tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row))  # every row's keys, first seen first
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(_cell(row.get(key, "")) for key in keys) + " |" for row in rows] + [""]


def _forward(results: dict[str, Any], batch: int) -> str:
    rows = results["sections"].get("model", {}).get("forward", [])
    found = {row.get("omp_wait_policy", "PASSIVE"): row["fraction_of_matmul_peak"] for row in rows if row["batch"] == batch}
    return ", ".join(f"{value} ({policy.strip('()')})" for policy, value in found.items()) or "not measured"


def _sae_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sae section's rows by trainer ("ours", "saelens", "chapter")."""
    return {row.get("trainer"): row for row in results["sections"].get("sae", [])}


def _sae(results: dict[str, Any], key: str) -> str:
    rows = _sae_rows(results)
    ours, saelens = rows.get("ours", {}), rows.get("saelens", {})
    if key == "speed":
        return f"{ours['speed_vs_saelens']}x" if "speed_vs_saelens" in ours else "not measured"
    values = [f"{name} {row[key]}" for name, row in [("ours", ours), ("SAELens", saelens)] if key in row]
    return ", ".join(values) or "not measured"


def _chapter_sae(results: dict[str, Any]) -> str:
    row = _sae_rows(results).get("chapter", {})
    if "variance_explained" not in row:
        return "not measured"
    notebook = [r for r in results["sections"].get("chapters", []) if r.get("notebook", "").startswith("02_")]
    budget = f"; the chapter end to end in {notebook[0]['seconds']:.0f} s" if notebook and "seconds" in notebook[0] else ""
    return (f"{row['variance_explained']}, {row.get('ce_loss_recovered', 'not measured')} (L0 {row['l0']:.0f}, "
            f"width {row['d_sae']}{budget})")


def _memory(results: dict[str, Any], section: str) -> str:
    rows = [row for row in results["sections"].get(section, []) if "completed" in row]
    if not rows:
        return "not measured"
    failed = [row.get("notebook", "?") for row in rows if row.get("completed") is not True]
    return f"{len(rows) - len(failed)} of {len(rows)} complete" + (f" ({', '.join(failed)} do not)" if failed else "")


def _transcoders(results: dict[str, Any]) -> str:
    rows = [row for row in results["sections"].get("transcoders", []) if "train_seconds" in row]
    if not rows:
        return "not measured"
    row = rows[0]
    return (f"{row['train_seconds'] / 60:.1f} min, peak {row['peak_gb']} GB ({row['config']}: layers {row['layers']}, "
            f"variance explained {row['variance_explained_min']}–{row['variance_explained_max']})")


def _bench_minutes(results: dict[str, Any]) -> str:
    """This run's minutes; where sections were re-read (bench/stored.py), also what measuring every one takes."""
    seconds = results.get("section_seconds", {})
    if not seconds:
        return "not measured"
    total, reread = sum(seconds.values()), results.get("stored", {})
    if not reread:
        return f"{total / 60:.1f} min ({len(seconds)} sections)"
    fresh = total + sum(note["seconds"] for note in reread.values())
    return (f"{total / 60:.1f} min ({len(seconds)} sections, {', '.join(reread)} re-read from their measurement of the "
            f"same code; every section measured: {fresh / 60:.1f} min)")


# Issue 18's targets, each beside the figure it started from (the issue's baseline, measured before the work)
# and what this run measured.
TARGETS: list[tuple[str, str, str, Callable[[dict[str, Any]], str]]] = [
    ("forward pass at 8 x 128, fraction of the matmul peak", ">= 0.65", "0.66 (PASSIVE)", lambda r: _forward(r, 8)),
    ("forward pass at 1 x 128, fraction of the matmul peak", ">= 0.5", "0.34 (PASSIVE)", lambda r: _forward(r, 1)),
    ("chapter 02's SAE at L0 <= 32: variance explained, CE loss recovered", ">= 0.85, >= 0.99", "0.816, 0.975",
     lambda r: _chapter_sae(r)),
    ("SAE trainer throughput vs SAELens at equal L0", ">= 1.3x", "1.25x", lambda r: _sae(r, "speed")),
    ("SAE variance explained, L0 32", "ours >= SAELens's", "ours 0.836, SAELens 0.821", lambda r: _sae(r, "variance_explained")),
    ("SAE CE loss recovered", "reported for both", "not reported", lambda r: _sae(r, "ce_loss_recovered")),
    ("chapters end to end under a 1.5 GB cgroup", "all", "03 killed", lambda r: _memory(r, "chapters")),
    ("grading (grader + kernel) under a 2.5 GB cgroup", "all", "not measured (RSS up to 3.35 GB)",
     lambda r: _memory(r, "grading")),
    ("`make bench`", "<= 15 min", "not measured", _bench_minutes),
    ("chapter 05's transcoders trained once (issue 20)", "<= 15 min", "new", _transcoders),
]  # fmt: skip


def targets_table(results: dict[str, Any]) -> list[str]:
    rows = [{"target": name, "goal": goal, "baseline": start, "this run": now(results)} for name, goal, start, now in TARGETS]
    return markdown_table(rows)


def markdown(results: dict[str, Any]) -> str:
    command = "python -m bench.run" + (" --quick" if results["quick"] else "")
    lines = [f"Measured {results['date']} on {results['machine']} (`{command}`).", ""]
    lines += ["**targets** (issue 18; the test suite's time is in the README)", ""] + targets_table(results)
    for section, value in results["sections"].items():
        note = results.get("stored", {}).get(section)
        reread = f" (re-read: measured {note['date']} in {note['seconds']} s, from the same code on this machine)" if note else ""
        lines += [f"**{section}**{reread}", ""]
        if isinstance(value, dict):  # scalars, then each list of rows as its own table
            lines += markdown_table([{k: v for k, v in value.items() if not isinstance(v, list)}])
            for rows in (v for v in value.values() if isinstance(v, list)):
                lines += markdown_table(rows)
        else:
            lines += markdown_table(value)
    return "\n".join(lines)
