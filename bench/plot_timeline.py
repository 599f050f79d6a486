# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot a migration report's transfer timeline as a PNG next to the JSON.

    python3 bench/plot_timeline.py reports/migrate-<svc>-latest.json [-o out.png]

Reads the report's ``timeline`` list (points with ``t``, ``codec``, ``level``,
``raw_Bps``, ``wire_Bps`` and, when the network was sampled, ``rtt_ms``,
``loss``, ``goodput_Bps``); the list may also sit under ``transfer`` or
``result``. Top panel: raw, wire and acknowledged (goodput) throughput in
Mbit/s; middle: the codec:level in use (one colour per codec); bottom: RTT
and loss. Only this script needs matplotlib (the engine does not).
Exit status 0 and the PNG path on stdout; 1 with a message otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

CODEC_COLOURS = {"none": "tab:gray", "lz4": "tab:blue", "zstd": "tab:orange", "wkdm": "tab:green"}


def find_timeline(report) -> list:
    if isinstance(report, list):
        return report
    if not isinstance(report, dict):
        return []
    if isinstance(report.get("timeline"), list):
        return report["timeline"]
    for key in ("transfer", "result", "stream", "migration"):
        sub = report.get(key)
        if isinstance(sub, dict):
            tl = find_timeline(sub)
            if tl:
                return tl
    return []


def plot(timeline: list, out: str, title: str = "") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in timeline if isinstance(p, dict) and "t" in p]
    if not pts:
        raise ValueError("the report has no timeline points")
    t = [float(p["t"]) for p in pts]

    def mbit(key):
        return [float(p.get(key) or 0) * 8 / 1e6 for p in pts]

    has_net = any("rtt_ms" in p for p in pts)
    fig, axes = plt.subplots(3 if has_net else 2, 1, sharex=True, figsize=(9, 7 if has_net else 5.5),
                             gridspec_kw={"height_ratios": [3, 2, 1.5] if has_net else [3, 2]})
    ax = axes[0]
    ax.plot(t, mbit("raw_Bps"), label="raw (before compression)", color="tab:green")
    ax.plot(t, mbit("wire_Bps"), label="on the wire", color="tab:red")
    if any("goodput_Bps" in p for p in pts):
        ax.plot(t, mbit("goodput_Bps"), label="acknowledged (goodput)", color="tab:purple",
                linestyle="--")
    ax.set_ylabel("Mbit/s")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)

    ax = axes[1]
    labels = [f"{p.get('codec', '?')}:{p.get('level', 0)}" for p in pts]
    order = sorted(set(labels), key=lambda s: (s.split(":")[0], int(s.split(":")[1]) if s.split(":")[1].lstrip("-").isdigit() else 0))
    ypos = {lab: i for i, lab in enumerate(order)}
    for codec, colour in CODEC_COLOURS.items():
        xs = [ti for ti, lab in zip(t, labels) if lab.startswith(codec + ":")]
        ys = [ypos[lab] for lab in labels if lab.startswith(codec + ":")]
        if xs:
            ax.scatter(xs, ys, s=12, color=colour, label=codec)
    ax.step(t, [ypos[lab] for lab in labels], where="post", color="black", linewidth=0.6, alpha=0.5)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=8)
    ax.set_ylabel("codec:level")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)

    if has_net:
        ax = axes[2]
        ax.plot(t, [float(p.get("rtt_ms") or 0) for p in pts], color="tab:brown", label="RTT ms")
        ax.set_ylabel("RTT ms")
        ax2 = ax.twinx()
        ax2.plot(t, [float(p.get("loss") or 0) * 100 for p in pts], color="tab:pink", label="loss %")
        ax2.set_ylabel("loss %")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds since the stream started")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", help="report JSON (e.g. reports/migrate-apache-latest.json)")
    ap.add_argument("-o", "--output", help="PNG path (default: the report's path with .png)")
    args = ap.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.report}: {exc}", file=sys.stderr)
        return 1
    out = args.output or os.path.splitext(args.report)[0] + ".png"
    title = ""
    if isinstance(report, dict):
        title = " ".join(str(report[k]) for k in ("svc", "service", "source", "target") if k in report)
    try:
        plot(find_timeline(report), out, title)
    except ImportError as exc:
        print(f"matplotlib is needed for the plot: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{args.report}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
