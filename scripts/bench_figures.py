#!/usr/bin/env python3
"""Draws the benchmark figures of docs/benchmarks.md from `tether bench stream --json` results.

usage: bench_figures.py RESULTS_DIR OUT_DIR

RESULTS_DIR holds what `scripts/bench figures` ran: latency.json (a steady rate, with its timeline),
streams-<N>.json (tokens as fast as the worker goes, N concurrent streams) and idle-<N>.json (N idle clients).
Writes bench-latency.png, bench-streams.png and bench-idle.png into OUT_DIR.
"""
import glob
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def numbered(results, prefix):
    """{N: report} for RESULTS_DIR/<prefix>-<N>.json, by N."""
    found = {}
    for path in glob.glob(os.path.join(results, f"{prefix}-*.json")):
        match = re.search(rf"{prefix}-(\d+)\.json$", path)
        if match:
            found[int(match.group(1))] = load(path)
    return dict(sorted(found.items()))


def machine(report):
    m = report.get("machine", {})
    return f"{m.get('cores', 0):.0f} cores, {m.get('memoryGiB', 0):.0f} GiB, {m.get('cpu', '')}, {report.get('date', '')[:10]}"


def latency(results, out):
    path = os.path.join(results, "latency.json")
    if not os.path.exists(path):
        return
    report = load(path)
    rows = report.get("timeline", [])
    seconds = [r["second"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(seconds, [r["p50Ms"] for r in rows], label="p50", marker="o", markersize=3)
    ax.plot(seconds, [r["p99Ms"] for r in rows], label="p99", marker="o", markersize=3)
    ax.set_xlabel("second of the run")
    ax.set_ylabel("delivery latency, append → client (ms)")
    t = report.get("throughput", {})
    ax.set_title(
        f"{t.get('executions', 0):.0f} streams × 10 tokens/s: latency per second\n{machine(report)}", fontsize=9)
    ax.set_yscale("log")  # the creation burst of second 0 is two orders above the steady seconds
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-latency.png"), dpi=110)


def over_streams(ax, ylabel):
    """An axis over the number of streams (log scale), from zero up."""
    ax.set_xscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def streams(results, out):
    runs = numbered(results, "streams")
    if not runs:
        return
    counts = list(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot(counts, [r["throughput"]["eventsPerSecond"] / 1000 for r in runs.values()], marker="o")
    over_streams(left, "events delivered per second (thousands)")
    for process in ("gateway", "worker", "redis", "clients"):
        values = [r.get("cpu", {}).get(process, {}).get("microsecondsPerEvent") for r in runs.values()]
        if any(v is not None for v in values):
            right.plot(counts, values, marker="o", label=process)
    over_streams(right, "CPU per delivered event (µs)")
    right.legend()
    first = next(iter(runs.values()))
    fig.suptitle(f"Tokens as fast as the worker goes\n{machine(first)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-streams.png"), dpi=110)


def idle(results, out):
    runs = numbered(results, "idle")
    if not runs:
        return
    counts = list(runs)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    rss = [r["idle"]["gatewayRSSMiB"] for r in runs.values()]
    ax.plot(counts, rss, marker="o", label="gateway RSS with the clients open")
    ax.plot(counts, [r["idle"]["gatewayRSSBeforeMiB"] for r in runs.values()], linestyle="--", label="before")
    for n, value, report in zip(counts, rss, runs.values()):
        ax.annotate(f"{report['idle']['perClientKiB']:.1f} KiB/client", (n, value), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
    ax.set_xlabel("idle SSE clients (executions suspended for approval)")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    first = next(iter(runs.values()))
    ax.set_title(f"Gateway memory as idle clients grow\n{machine(first)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-idle.png"), dpi=110)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    latency(results, out)
    streams(results, out)
    idle(results, out)


if __name__ == "__main__":
    main()
