"""Results of one run: tables printed row by row as benchmarks finish, then written as markdown."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import Summary, ms, ratio

FIRST = 46  # console width of the first column
LATENCY_HEADERS = ["n", "p50 ms", "p95 ms", "mean ms", "min ms", "max ms"]


def latency_cells(s: Summary) -> list[str]:
    return [str(s.n), ms(s.p50), ms(s.p95), ms(s.mean), ms(s.min), ms(s.max)]


@dataclass
class Table:
    title: str
    headers: list[str]
    about: str = ""
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        row = [str(c) for c in cells]
        self.rows.append(row)
        widths = [max(FIRST, len(row[0]))] + [9] * (len(row) - 1)
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
        )
        print(f"  {line}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {textwrap.shorten(text, 400)}", flush=True)

    def add_latency(self, name: str, s: Summary, *extra: str) -> None:
        self.add(name, *latency_cells(s), *extra)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.about:
            out += [self.about, ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(self.headers))) + "|")
        for row in self.rows:
            padded = row + [""] * (len(self.headers) - len(row))
            out.append("| " + " | ".join(padded) + " |")
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        out.append("")
        return "\n".join(out)


@dataclass
class Check:
    """One target from the issue, evaluated on this run's numbers."""

    what: str
    target: str
    measured: str
    ok: bool | None  # None: could not be evaluated


@dataclass
class Results:
    quick: bool
    command: str
    facts: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summaries: dict[str, Summary] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    _printing: str = ""

    def table(self, key: str, title: str, headers: list[str], about: str = "") -> Table:
        existed = key in self.tables
        if not existed:
            self.tables[key] = Table(title, headers, about)
        if self._printing != key:  # a header on the console whenever rows go to another table
            self._printing = key
            print(f"\n== {title}{' (continued)' if existed else ''}", flush=True)
            print("  " + "  ".join(h.ljust(FIRST) if i == 0 else h.rjust(9) for i, h in enumerate(headers)))
        return self.tables[key]

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {textwrap.shorten(text, 400)}", flush=True)

    def fail(self, what: str, exc: BaseException) -> None:
        msg = f"{what}: {type(exc).__name__}: {exc}"
        self.failures.append(msg)
        print(f"  !! {msg}", file=sys.stderr, flush=True)

    def speedup(self, slow: str, fast: str) -> float:
        """p50 of `slow` divided by p50 of `fast` (how many times faster `fast` is)."""
        a, b = self.summaries.get(slow), self.summaries.get(fast)
        if a is None or b is None or b.p50 <= 0:
            return float("nan")
        return a.p50 / b.p50

    def markdown(self) -> str:
        out = ["# Corral benchmark results", ""]
        kind = "a **quick run**: reduced counts, not the reference figures" if self.quick else "a full run"
        out += [
            f"Written by `{self.command}` ({kind}) on {self.facts.get('date', '?')}, "
            f"in {self.elapsed_s:.0f} s. What each figure means: [README.md](README.md). "
            "Absolute times on a shared VM are noisy: compare the ratios, which are measured "
            "against baselines taken in the same run on the same machine.",
            "",
            "## Machine",
            "",
            "| fact | value |",
            "| --- | --- |",
        ]
        out += [f"| {k} | {v} |" for k, v in self.facts.items()]
        out += ["", "## Headline: targets from the issue", ""]
        out += ["| what | target | measured | met |", "| --- | --- | --- | --- |"]
        for c in self.checks:
            met = "—" if c.ok is None else ("yes" if c.ok else "**no**")
            out.append(f"| {c.what} | {c.target} | {c.measured} | {met} |")
        out += ["", "## Details", ""]
        out += [t.markdown() for t in self.tables.values()]
        if self.notes:
            out += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.failures:
            out += ["## Failures in this run", ""] + [f"- {f}" for f in self.failures] + [""]
        return "\n".join(out)

    def write(self, path: Path) -> None:
        path.write_text(self.markdown())


__all__ = ["LATENCY_HEADERS", "Check", "Results", "Table", "latency_cells", "ratio"]
