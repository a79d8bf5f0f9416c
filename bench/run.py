"""What the course costs to run and grade on this machine: ``python -m bench.run [--quick]``.

Prints one table per section and writes ``bench/results/latest.json`` and ``latest.md``:

- chapters: every solution notebook end to end in a fresh kernel (nbclient) under a 1.5 GB cgroup, as
  Binder enforces memory — whether it completed, wall time, the cgroup's peak and the peak anonymous
  memory (bench/chapters.py);
- grading: ``python -m utils.grade`` on each solution notebook (the heaviest grade of its chapter), grader and
  kernel under one 2.5 GB cgroup — wall time, score, whether it completed, the same peaks;
- throughput: a class folder graded with 1 and 2 workers (notebooks per minute);
- isolation: one notebook graded isolated and not (what the sandbox costs);
- model: load time of the bundled model, forward throughput at a few batch sizes, and the FLOP/s
  achieved beside a matmul peak measured in the same process (medians with their spread), with and
  without ``OMP_WAIT_POLICY=PASSIVE``;
- sae: our chapter-02 trainer beside SAELens's on the same cached activations (see bench/sae.py);
- scaling: SAE training time and memory as the width and the token budget double;
- transcoders: chapter 05's band of transcoders trained from nothing (time, peak memory, held-out figures).

``--quick`` (a smoke run, used by the test suite) measures the model and a small SAE only; ``--only SECTION ...``
re-measures some sections and keeps the others, and ``--chapters ID ...`` some notebooks' rows of the chapters and
grading sections (a new chapter, or one that changed). A whole run re-reads the slowest sections (chapters,
transcoders, scaling) from its last measurement of the same code on the same machine (bench/stored.py);
``--fresh`` measures them again.
Figures are printed, never asserted: targets are in the issue and in the README's Performance section.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the grader and its kernel run side by side

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
import torch  # noqa: E402

from bench import chapters, grading, model, sae, stored, transcoders  # noqa: E402
from bench.measure import GB, stopwatch  # noqa: E402
from bench.report import markdown  # noqa: E402
from utils.paths import ROOT  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def cpu_model() -> str:
    """The CPU's name (machines differ between sessions: compare figures measured in one run)."""
    from utils.figures import machine

    found = machine()
    return f"{found['cpu']} ({found['capability']})"


SECTIONS = ["model", "sae", "scaling", "transcoders", "chapters", "grading", "throughput", "isolation"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: the model and a small SAE only (~1 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="re-measure only these sections (keeps the others in --out)")
    parser.add_argument("--chapters", nargs="+", metavar="ID",
                        help="with --only chapters/grading: re-measure only these notebooks (05, 04a, ...), keep the other rows")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json and latest.md")
    parser.add_argument("--fresh", action="store_true", help="measure every section (stored sections not re-read)")
    args = parser.parse_args(argv)
    if args.chapters and not args.only:
        parser.error("--chapters re-measures some rows of a section: name the sections with --only")
    sections = args.only or (["model", "sae", "scaling"] if args.quick else SECTIONS)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / GB:.0f} GB, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "quick": args.quick,
        "sections": {},
    }
    runners: dict[str, Callable[[], Any]] = {
        "model": lambda: model.bench_model(args.quick),
        "sae": lambda: sae.bench_trainers(args.quick),
        "scaling": lambda: sae.bench_scaling(args.quick),
        "transcoders": lambda: transcoders.bench_transcoders(args.quick),
        "chapters": lambda: chapters.bench_chapters(args.quick, args.chapters),
        "grading": lambda: grading.bench_grading(args.quick, args.chapters),
        "throughput": lambda: grading.bench_throughput(args.quick),
        "isolation": lambda: grading.bench_isolation(args.quick),
    }
    whole = not args.quick and not args.chapters  # whole sections as measured: stored, and re-read by a run without --only
    reread = whole and not args.only and not args.fresh
    for section in sections:
        print(f"{section}:", flush=True)
        earlier = stored.lookup(section, results["machine"]) if reread and section in stored.STORED else None
        if earlier:
            results["sections"][section] = earlier["result"]
            results.setdefault("stored", {})[section] = {"date": earlier["date"], "seconds": earlier["seconds"]}
            results.setdefault("section_seconds", {})[section] = 0
            print(f"  (re-read: measured {earlier['date']} in {earlier['seconds']} s, from the same code on this machine)")
            continue
        with stopwatch() as timing:
            results["sections"][section] = runners[section]()
        print(f"  ({timing['seconds']:.0f} s)", flush=True)
        results.setdefault("section_seconds", {})[section] = round(timing["seconds"])
        if whole and section in stored.STORED:
            stored.store(section, results["machine"], results["sections"][section], timing["seconds"], results["date"])
    previous = args.out / "latest.json"
    if args.only and previous.exists():  # re-measured sections replace theirs; the others are kept
        kept = json.loads(previous.read_text())
        if kept.get("quick") == args.quick:
            partial = set(sections) & {"chapters", "grading"} if args.chapters else set()  # sections with only some rows
            for section in partial:  # the rows of other notebooks kept
                measured = {row["notebook"] for row in results["sections"][section]}
                rows = [row for row in kept["sections"].get(section, []) if row["notebook"] not in measured]
                results["sections"][section] = sorted(rows + results["sections"][section], key=lambda row: row["notebook"])
            results["sections"] = {**kept["sections"], **results["sections"]}
            seconds = dict(results["section_seconds"])
            for section in partial:  # a few rows: not the section's time
                seconds.pop(section, None)
            results["section_seconds"] = {**kept.get("section_seconds", {}), **seconds}
            reread_before = {name: note for name, note in kept.get("stored", {}).items() if name not in sections}
            results["stored"] = {**reread_before, **results.get("stored", {})}
            which = f" of {', '.join(args.chapters)}" if args.chapters else ""
            results["date"] = f"{kept['date']} ({', '.join(sections)}{which}: {results['date']} on {results['machine']})"
            results["machine"] = kept["machine"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "latest.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
