# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A migration report as a picture: its stages, and the stream's timeline.

Top panel, always: one bar per stage of the downtime path (checkpoint,
transfer, restore, health, address...) from the report's ``stages_s``, so a
migration shorter than one timeline sample still shows where its time went.
Below it, when the stream was sampled (``timeline`` points with ``t``,
``codec``, ``level``, ``raw_Bps``, ``wire_Bps`` and maybe ``rtt_ms``,
``loss``, ``goodput_Bps``): throughput, the codec:level in use, RTT and loss.
Only this file needs matplotlib, and only on the controller.
"""
from __future__ import annotations

CODEC_COLOURS = {"none": "tab:gray", "lz4": "tab:blue", "zstd": "tab:orange", "wkdm": "tab:green"}
# Report keys that are sums or totals, not stages of their own.
NOT_STAGES = ("downtime_s", "total_s")
# The order stages happen in; connect comes before the freeze (not downtime).
STAGE_ORDER = ("connect", "checkpoint", "transfer", "restore", "health", "switch")
# Times that are part of a stage, not stages of their own: CRIU's share of the checkpoint and of
# the restore. They are drawn inside their stage's bar, never after the switch-over.
NESTED = {"criu_frozen": "checkpoint", "criu_memdump": "checkpoint", "criu_memwrite": "checkpoint",
          "criu_restore": "restore", "criu_restore_stage": "restore"}


def find_timeline(report) -> list:
    """The timeline points of a report (they may sit under transfer/result)."""
    if isinstance(report, list):
        return report
    if not isinstance(report, dict):
        return []
    if isinstance(report.get("timeline"), list) and report["timeline"]:
        return report["timeline"]
    for key in ("transfer", "result", "stream", "migration"):
        sub = report.get(key)
        if isinstance(sub, dict):
            found = find_timeline(sub)
            if found:
                return found
    return []


def _durations(report: dict) -> list[tuple[str, float]]:
    out = []
    for key, value in (report.get("stages_s") or {}).items():
        if key in NOT_STAGES or not isinstance(value, (int, float)) or value <= 0:
            continue
        out.append((key[:-2] if key.endswith("_s") else key, float(value)))
    return out


def stages(report: dict) -> list[tuple[str, float]]:
    """(stage, seconds) of the report's stages in the order they happen; times nested in a stage left out."""
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted([(n, s) for n, s in _durations(report) if n not in NESTED],
                  key=lambda item: rank.get(item[0], len(rank)))


def nested(report: dict) -> list[tuple[str, str, float]]:
    """(stage it belongs to, name, seconds) of the times within a stage (CRIU's shares)."""
    return [(NESTED[n], n, s) for n, s in _durations(report) if n in NESTED]


def _codec_order(label: str) -> tuple:
    codec, _sep, level = label.partition(":")
    return codec, int(level) if level.lstrip("-").isdigit() else 0


def _stage_bars(ax, bars: list[tuple[str, float]], inner: list[tuple[str, str, float]]) -> None:
    """One bar per stage, in order; a time nested in a stage (CRIU's share) as a hatched strip inside it."""
    left, total, starts = 0.0, sum(secs for _name, secs in bars), {}
    for i, (name, secs) in enumerate(bars):
        ax.barh(0, secs, left=left, color=f"C{i % 10}", edgecolor="black", linewidth=0.4, label=name)
        if secs > 0.06 * total:   # label the bars wide enough to hold it; the legend names all
            ax.text(left + secs / 2, 0.12, f"{name}\n{secs:.2f} s", ha="center", va="center", fontsize=7)
        if name == "connect":
            ax.axvline(left + secs, color="black", linestyle=":", linewidth=1)
            ax.text(left + secs, 0.45, " freeze", fontsize=7, va="top")
        starts[name] = (left, secs)
        left += secs
    # Within its stage: CRIU's own run of the restore, its freeze of the checkpoint (the longest one
    # per stage, so strips never overlap; the rest of the stage is Docker's and containerd's).
    longest: dict[str, tuple[str, float]] = {}
    for stage, name, secs in inner:
        if stage in starts and secs > longest.get(stage, ("", 0.0))[1]:
            longest[stage] = (name, min(secs, starts[stage][1]))
    for stage, (name, secs) in longest.items():
        ax.barh(-0.28, secs, left=starts[stage][0], height=0.22, color="white", edgecolor="black",
                hatch="///", linewidth=0.4, label=f"{name} (in {stage})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=min(len(bars) + len(longest), 4),
              fontsize=7, frameon=False)
    ax.set_yticks([])
    ax.set_xlim(0, left * 1.02 if left else 1)
    ax.set_xlabel("seconds (stages of the migration, in order; hatched: CRIU's own share inside a stage)")


def drawable(report: dict) -> tuple[list[tuple[str, float]], list[dict]]:
    """The stage bars and timeline points a plot of the report draws; ValueError when there are none.

    No matplotlib needed: the module asks this before it starts a drawer.
    """
    bars = stages(report)
    pts = [p for p in find_timeline(report) if isinstance(p, dict) and "t" in p]
    if not bars and not pts:
        raise ValueError("the report has neither stage durations nor timeline points")
    return bars, pts


def plot(report: dict, out: str) -> str:
    """Write the PNG to ``out`` (whatever its name ends with); ImportError without matplotlib, ValueError
    with nothing to draw."""
    bars, pts = drawable(report)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_net = any("rtt_ms" in p for p in pts)
    panels = ([("stages", 1.5)] if bars else []) + ([("rate", 3), ("codec", 2)] if pts else []) \
        + ([("net", 1.5)] if has_net else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 1.6 * sum(h for _kind, h in panels) / 1.5),
                             gridspec_kw={"height_ratios": [h for _kind, h in panels]}, squeeze=False)
    axes = [a[0] for a in axes]
    title = f"{report.get('service', '')} {report.get('source', '')} -> {report.get('target', '')}"
    if "downtime_s" in report:
        title += f"  (down {float(report['downtime_s']):.2f} s)"
    axes[0].set_title(title.strip())
    for (kind, _height), ax in zip(panels, axes):
        if kind == "stages":
            _stage_bars(ax, bars, nested(report))
        elif kind == "rate":
            t = [float(p["t"]) for p in pts]
            for key, label, colour, style in (("raw_Bps", "raw (before compression)", "tab:green", "-"),
                                              ("wire_Bps", "on the wire", "tab:red", "-"),
                                              ("goodput_Bps", "acknowledged (goodput)", "tab:purple", "--")):
                if any(key in p for p in pts):
                    ax.plot(t, [float(p.get(key) or 0) * 8 / 1e6 for p in pts], label=label, color=colour,
                            linestyle=style)
            ax.set_ylabel("Mbit/s")
            ax.legend(loc="upper right", fontsize=8)
            ax.grid(alpha=0.3)
        elif kind == "codec":
            t = [float(p["t"]) for p in pts]
            labels = [f"{p.get('codec', '?')}:{p.get('level', 0)}" for p in pts]
            ypos = {lab: i for i, lab in enumerate(sorted(set(labels), key=_codec_order))}
            for codec, colour in CODEC_COLOURS.items():
                xs = [ti for ti, lab in zip(t, labels) if lab.startswith(codec + ":")]
                if xs:
                    ax.scatter(xs, [ypos[lab] for lab in labels if lab.startswith(codec + ":")], s=12,
                               color=colour, label=codec)
            ax.step(t, [ypos[lab] for lab in labels], where="post", color="black", linewidth=0.6, alpha=0.5)
            ax.set_yticks(range(len(ypos)))
            ax.set_yticklabels(list(ypos), fontsize=8)
            ax.set_ylabel("codec:level")
            ax.grid(alpha=0.3)
            ax.set_xlabel("seconds since the stream started")
        else:
            t = [float(p["t"]) for p in pts]
            ax.plot(t, [float(p.get("rtt_ms") or 0) for p in pts], color="tab:brown")
            ax.set_ylabel("RTT ms")
            twin = ax.twinx()
            twin.plot(t, [float(p.get("loss") or 0) * 100 for p in pts], color="tab:pink")
            twin.set_ylabel("loss %")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
    return out
