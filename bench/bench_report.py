# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/benchmarks.md's generated sections and docs/img/*.png from the raw results of bench/migration_bench.py.

    python3 bench/migration_bench.py --from-json docs/benchmarks.json          # the main section
    python3 bench/migration_bench.py --from-json docs/benchmarks-precopy.json  # the pre-copy section

A run rewrites only its own section, in place between its markers (bench/doc_section.py): the main one
(REPORT_MARKERS, ending with docs/benchmarks-notes.md) or the pre-copy one (PRECOPY_MARKERS, ending with
docs/benchmarks-precopy-notes.md). Everything else in the document is kept byte for byte: the other
section, and the sections written by hand after them (the floor under the restore, the evacuation, ...),
which no generator touches. Edit a section's notes in its notes file, not between its markers.

Every number in a generated section is computed here from the JSON; nothing is typed in.
"""
from __future__ import annotations

import os
import statistics

import doc_section
from compare_runs import cell_name

# The unit of a referenced page in the pre-copy table (imported by migration_bench and the tests, both
# with the collection on the path).
from ansible_collections.edgemig.migration.plugins.module_utils.wire.page_arrays import PAGE_SIZE

METHODS = ["uncompressed", "podman", "paper", "model"]
LABEL = {"uncompressed": "uncompressed serial", "podman": "Podman-style export", "paper": "paper controller",
         "model": "model controller (default)"}
TARGETS = {"apache_unshaped": 1.0, "apache_10": 1.5, "mysql": 3.0, "ratio": 0.35}
# The main section of docs/benchmarks.md (make bench) and its notes written by hand, beside it in docs/.
REPORT_MARKERS = ("<!-- report:begin -->", "<!-- report:end -->")
REPORT_NOTES = "benchmarks-notes.md"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def f(v, nd=2, unit=""):
    if v is None:
        return "-"
    return f"{v:.{nd}f}{unit}"


def rate_name(r):
    return "unshaped" if not r else f"{r:g} Mbit/s"


def sel(results, **kw):
    out = []
    for r in results:
        if all(r.get(k) == v for k, v in kw.items()):
            out.append(r)
    return out


def ok(rs):
    return [r for r in rs if r.get("ok")]


def mt(r):
    """Migration time of the data path: freeze to serving on the target (module/harness measured)."""
    return r.get("module_downtime_s")


def sender_cpu(r):
    """Podman-style: tar + zstd + scp client (harness children, exact); ours: the module process (sampled)."""
    if r["method"] == "podman":
        return (r.get("compress_cpu_s") or 0.0) + (r.get("scp_client_cpu_s") or 0.0)
    return r["proc"]["sender_cpu_s"]


def receiver_cpu(r):
    """Podman-style: tar -x + zstd -d + cp (the target's scp/sshd side is not counted); ours: the receiver."""
    if r["method"] == "podman":
        return r.get("unpack_cpu_s")
    return r["proc"]["receiver_cpu_s"]


def stage_split(r):
    s = r.get("stages") or {}
    xfer = s.get("transfer_s")
    if xfer is None:  # podman: export + copy + import
        xfer = sum(s.get(k, 0.0) for k in ("export_s", "copy_s", "import_s"))
    return {"freeze+dump": s.get("checkpoint_s"), "transfer": xfer, "restore": s.get("restore_s"),
            "switch-over": (s.get("health_s") or 0.0) + (s.get("switch_s") or 0.0)}


def _medians(rows, whole: str, own: str):
    """Medians of stage ``whole`` and of CRIU's ``own`` part of it, over the runs that report both."""
    pairs = [((r.get("stages") or {}).get(whole), (r.get("stages") or {}).get(own)) for r in rows]
    pairs = [(a, c) for a, c in pairs if a is not None and c is not None]
    if not pairs:
        return None
    return med([p[0] for p in pairs]), med([p[1] for p in pairs]), len(pairs)


def criu_share(rows) -> str:
    """The freeze+dump's and the restore's split, medians: CRIU's own part (criu_frozen_s from stats-dump,
    criu_restore_s from the target's restore.log) against the stage; '' when no run reported it."""
    out = ""
    dump = _medians(rows, "checkpoint_s", "criu_frozen_s")
    if dump:
        a, c, n = dump
        out += (f" Of the freeze+dump ({f(a)} s, {n} runs), CRIU keeps the service frozen {f(c)} s (its stats-dump);"
                f" the rest is runc and containerd around it (the dump goes through containerd with an image path"
                f" since 3635521: no content-store round trip).")
    restore = _medians(rows, "restore_s", "criu_restore_s")
    if restore:
        a, c, n = restore
        out += (f" Of the restore ({f(a)} s, {n} runs), CRIU's own run is {f(c)} s; the other {f(a - c)} s are "
                f"Docker's, containerd's and runc's work around it (the images packed into containerd's content store "
                f"and unpacked again - since 74e956f all but the pages, which stay on our tmpfs behind links - the "
                f"container's mounts, namespaces and network set up).")
    return out


def plots(data, img_dir):
    """The main section's figures, each from its runs, as PNGs in ``img_dir``: {key: path from docs/} of those drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = data["results"]
    made = {}
    os.makedirs(img_dir, exist_ok=True)
    for key, png, draw in PLOTS:
        fig = draw(plt, res)
        if fig is None:
            continue
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, png), dpi=110)
        plt.close(fig)
        made[key] = f"img/{png}"
    return made


def _plot_fig8(plt, res):
    """Fig. 8: migration time vs bandwidth per method, one panel per service. None: no such runs."""
    svcs = [s for s in ("apache", "mysql", "tomcat") if sel(res, service=s, group="fig8")]
    if not svcs:
        return None
    fig, axes = plt.subplots(1, len(svcs), figsize=(5 * len(svcs), 4), squeeze=False)
    for ax, svc in zip(axes[0], svcs):
        for m in METHODS:
            rates = sorted({r["rate_mbit"] for r in sel(res, service=svc, method=m, group="fig8") if r["rate_mbit"]})
            ys = [med([mt(r) for r in ok(sel(res, service=svc, method=m, rate_mbit=x, group="fig8"))]) for x in rates]
            pts = [(x, y) for x, y in zip(rates, ys) if y is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABEL[m])
        ax.set_xscale("log")
        ax.set_xlabel("link rate (Mbit/s, tbf)")
        ax.set_ylabel("migration time, freeze to serving (s)")
        ax.set_title(svc)
        ax.grid(alpha=.3)
    axes[0][0].legend(fontsize=8)
    return fig


def _plot_fig9(plt, res):
    """Fig. 9: migration time vs fixed lz4 level, per service and rate. None: no such runs."""
    f9 = fig9_runs(res)
    if not f9:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for svc in sorted({r["service"] for r in f9}):
        for rate in sorted({r["rate_mbit"] for r in f9 if r["service"] == svc}):
            pts = sorted((int(r["method"][4:]), mt(r)) for r in f9 if r["service"] == svc and r["rate_mbit"] == rate)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{svc} @ {rate_name(rate)}")
    ax.set_xlabel("fixed lz4 level")
    ax.set_ylabel("migration time, freeze to serving (s)")
    ax.set_yscale("log")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return fig


def _plot_fig5(plt, res):
    """Fig. 5: the transfer stage, serial vs pipelined. None: no such runs."""
    f5 = ok([r for r in res if r.get("group") == "fig5"])
    if not f5:
        return None
    keys = sorted({(r["service"], r["rate_mbit"]) for r in f5})
    fig, ax = plt.subplots(figsize=(6, 4))
    w = 0.38
    for i, kind in enumerate(("serial", "pipelined")):
        ys = [med([r["stages"].get("transfer_s") for r in f5 if (r["service"], r["rate_mbit"]) == k
                   and r["method"].startswith(kind)]) or 0 for k in keys]
        ax.bar([j + (i - .5) * w for j in range(len(keys))], ys, w, label=kind)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{s}\n{rate_name(r)}" for s, r in keys])
    ax.set_ylabel("transfer stage (s)")
    ax.legend()
    ax.grid(alpha=.3, axis="y")
    return fig


def _plot_ab(plt, res):
    """Fig. 6/7: ab's throughput and requests/s during a migration. None: no such runs."""
    abr = [r for r in res if r.get("ab")]
    if not abr:
        return None
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for r in abr:
        ser = r["ab"]["series"]
        lab = LABEL.get(r["method"], r["method"])
        a1.plot([p["t"] for p in ser], [p["mbit"] for p in ser], marker=".", label=lab)
        a2.plot([p["t"] for p in ser], [p["qps"] for p in ser], marker=".", label=lab)
        w0, w1 = r["ab_migration_window"]
        for ax in (a1, a2):
            ax.axvspan(w0, w1, alpha=.12, color=a1.lines[-1].get_color())
    a1.set_ylabel("throughput (Mbit/s)")
    a2.set_ylabel("requests/s")
    a2.set_xlabel("seconds since ab started (shaded: the migration)")
    a1.set_title(f"ab -c 100 on /big.html (512 KiB) during an apache migration, {rate_name(abr[0]['rate_mbit'])}")
    a1.legend(fontsize=8)
    for ax in (a1, a2):
        ax.grid(alpha=.3)
    return fig


def _plot_schedule(plt, res):
    """The controller's codec level and the throughput under a changing rate. None: no such runs."""
    sch = ok([r for r in res if r.get("schedule")])
    if not sch:
        return None
    fig, axes = plt.subplots(2, len(sch), figsize=(6 * len(sch), 6), squeeze=False, sharex="col")
    for col, r in enumerate(sch):
        tl = r.get("timeline") or []
        a1, a2 = axes[0][col], axes[1][col]
        if isinstance(r.get("schedule_anchor"), dict):
            # the schedule clock starts at the freeze; the stream after the checkpoint
            offset = r["stages"].get("checkpoint_s") or 0
        else:
            # older runs: the clock started before the playbook
            offset = (r.get("wall_s") or 0) - (r["stages"].get("downtime_s") or 0) + (r["stages"].get("checkpoint_s") or 0)
        a1.plot([p["t"] for p in tl], [p.get("wire_Bps", 0) * 8 / 1e6 for p in tl], label="wire Mbit/s")
        a1.plot([p["t"] for p in tl], [p.get("raw_Bps", 0) * 8 / 1e6 for p in tl], label="raw (effective) Mbit/s")
        steps = r["schedule"]
        xs, ys = [], []
        for i, s in enumerate(steps):
            t = s["t"] - offset
            nxt = steps[i + 1]["t"] - offset if i + 1 < len(steps) else (tl[-1]["t"] if tl else t + 1)
            xs += [t, nxt]
            ys += [s["rate_mbit"], s["rate_mbit"]]
        a1.plot(xs, ys, "k--", label="tbf rate")
        a1.set_ylabel("Mbit/s")
        a1.set_title(f"{r['service']}, {LABEL.get(r['method'], r['method'])}")
        a1.legend(fontsize=8)
        lv = [(p["t"], f"{p['codec']}:{p['level']}") for p in tl]
        names = sorted({v for _unused, v in lv})
        a2.step([t for t, _unused in lv], [names.index(v) for _unused, v in lv], where="post")
        a2.set_yticks(range(len(names)))
        a2.set_yticklabels(names)
        a2.set_xlabel("seconds since the stream started")
        a2.set_ylabel("codec:level")
        for ax in (a1, a2):
            ax.grid(alpha=.3)
            ax.set_xlim(left=0)
    return fig


# key (as the section's text asks for it), file, drawing
PLOTS = (("fig8", "fig8_time_vs_bandwidth.png", _plot_fig8),
         ("fig9", "fig9_time_vs_lz4_level.png", _plot_fig9),
         ("fig5", "fig5_serial_vs_pipelined.png", _plot_fig5),
         ("ab", "fig6_7_ab_during_migration.png", _plot_ab),
         ("schedule", "schedule_timeline.png", _plot_schedule))


def fig9_runs(res):
    """The successful runs of the fixed-lz4 sweep (Fig. 9)."""
    return ok([r for r in res if r.get("group") == "fig9"])


def write_any(data, path):
    """A run of pre-copy cells only (make bench-precopy) fills its section; anything else the whole report."""
    if data["results"] and all(r.get("group") == "precopy" for r in data["results"]):
        write_precopy(data, path)
    else:
        write(data, path)


def write(data, path):
    """The report's main section (between REPORT_MARKERS) from a run's JSON, its plots beside it; every
    other byte of ``path`` - the pre-copy section, the sections written by hand - as it was."""
    doc_section.read_document(path, REPORT_MARKERS, new_doc())  # a doc without the markers: refused before any plot
    doc_dir = os.path.dirname(os.path.abspath(path))
    made = plots(data, os.path.join(doc_dir, "img"))
    block = "\n".join(report_section(data, made, doc_dir))
    doc_section.write_section(path, REPORT_MARKERS, block, skeleton=new_doc())


def report_section(data, made, doc_dir):
    """The main section as lines, markers included: the tables of the run, then its notes written by hand."""
    return [REPORT_MARKERS[0], *report_tables(data, made),
            *hand_notes(os.path.join(doc_dir, REPORT_NOTES)), REPORT_MARKERS[1]]


def report_tables(data, made):
    """Every table and figure of the main section, in order, as lines; every number from ``data``."""
    res = data["results"]
    return [*_intro(data, res), *_fig8_tables(res, made), *_savings(res), *_targets(res), *_breakdown(res),
            *_fig9(res, made), *_fig5(res, made), *_ab(res, made), *_schedule(res, made), *_loss(res),
            *_resources(res)]


def hand_notes(path):
    """A section's notes written by hand (a file beside the report; none: no lines), ending its section."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [fh.read().rstrip("\n") + "\n"]


def new_doc():
    """A report that does not exist yet: its generated sections' markers, in the document's order."""
    return doc_section.skeleton(REPORT_MARKERS, PRECOPY_MARKERS)


def _intro(data, res):
    """The header: the command, the host, failed runs, and what each measure means."""
    L = []
    a = L.append
    a("# Migration benchmarks (issue 5, the paper's section VI on our lab)\n")
    a("Generated by `bench/bench_report.py` from `docs/benchmarks.json`; every number below was measured by "
      "`bench/migration_bench.py` on the two-edge lab (network namespaces on one 2-core machine, link shaped by "
      "tc tbf on the host-side veths). Rewrite it from the JSON with "
      "`python3 bench/migration_bench.py --from-json docs/benchmarks.json`.\n")
    a(f"- command: `{data['command']}`")
    a(f"- started {data['started']}, {len(res)} migrations in {data['elapsed_s']:.0f} s; "
      f"host: {data['host']['cpus']} CPUs, kernel {data['host']['kernel']}")
    failed = [r for r in res if not r.get("ok")]
    a(f"- failed migrations: {len(failed)}" + "".join(
        f"\n  - {r['service']} {r['method']} @ {rate_name(r['rate_mbit'])}: {r.get('error', '')[:200]}" for r in failed))
    a("")
    a("## What is measured\n")
    a("- **migration time**: freeze to serving on the target, measured on the source by `edge_migrate` "
      "(checkpoint + stream + restore + health + address) - or by the harness for the Podman-style export. "
      "All methods here are stop-and-copy (`edgemig_precopy=false`; warm pre-copy has its own section at the end), "
      "so this is also the service-side downtime. **playbook wall** is the whole `ansible-playbook migrate.yml` run "
      "(preflight, target creation, cleanup, report: about 5-6 s of Ansible on this machine) - the Podman-style "
      "export has no Ansible around it, so compare methods on migration time.")
    a("- **client downtime**: a client polls the stable service address every 20 ms (each probe its own thread, "
      "1 s timeout; apache `/index.html`, tomcat `/app/health.txt`, MariaDB: server greeting): the time from the "
      "last good answer before to the first good answer after.")
    a("- **bytes**: stream bytes (`bytes_wire`, or the archive size for the Podman-style export) and the bytes of "
      "all frames bridged from source to target edge (nft counter on the lab bridge: includes TCP/SSH overhead).")
    a("- **link utilisation** = stream bytes x 8 / transfer stage / tbf rate. **CPU** of the sender and receiver "
      "processes (sampled every 50 ms from /proc, incl. threads), `compress_cpu_s` from the module's stats, and per "
      "edge everything its sshd ran (all Ansible modules of the play included) and dockerd+containerd. "
      "CRIU's own CPU is not included. **peak RSS** of the sender / receiver processes.\n")
    return L


def _fig8_tables(res, made):
    """Fig. 8: migration time per method and rate, one table per service."""
    L = []
    a = L.append
    a("## Migration time vs bandwidth per method (Fig. 8)\n")
    if "fig8" in made:
        a(figure("Fig. 8", made['fig8']))
    for svc in ("apache", "mysql", "tomcat"):
        rows = sel(res, service=svc, group="fig8")
        if not rows:
            continue
        reps = max(r["repeat"] for r in rows) + 1
        a(f"### {svc} (median of {reps} run{'s' if reps > 1 else ''} per cell)\n")
        a("| rate | " + " | ".join(LABEL[m] for m in METHODS) + " | model / uncompressed | saving vs uncompressed |")
        a("|---|" + "---|" * (len(METHODS) + 2))
        for rate in sorted({r["rate_mbit"] for r in rows}, key=lambda x: (x == 0, x)):
            cells, vals = [], {}
            for m in METHODS:
                rs = ok(sel(rows, method=m, rate_mbit=rate))
                v = med([mt(r) for r in rs])
                w = med([r.get("wall_s") for r in rs])
                vals[m] = v
                cells.append(f"{f(v)} s (wall {f(w, 1)})" if v is not None else "-")
            ratio = vals["model"] / vals["uncompressed"] if vals.get("model") and vals.get("uncompressed") else None
            a(f"| {rate_name(rate)} | " + " | ".join(cells) + f" | {f(ratio)} | "
              f"{f((1 - ratio) * 100 if ratio else None, 1, ' %')} |")
        a("")
    return L


def _savings(res):
    """Our default's saving against the uncompressed serial baseline, and its distance to the best fixed lz4 level."""
    L = []
    a = L.append
    a("### Saving of our default vs uncompressed serial, per bandwidth\n")
    a("Saving = 1 - (model migration time / uncompressed serial migration time); the paper reports 45.4 % "
      "on average. Distance to the best fixed level: model time / best fixed-lz4 time - 1, where the lz4 sweep "
      "ran.\n")
    f9 = fig9_runs(res)
    # the service the lz4 sweep (Fig. 9) ran on (--lz4-services; mysql by default)
    sweep = sorted({r["service"] for r in f9})[0] if f9 else "mysql"
    a("| rate | " + " | ".join(s for s in ("apache", "mysql", "tomcat"))
      + f" | average | best fixed lz4 ({sweep}) | model vs best fixed |")
    a("|---|---|---|---|---|---|---|")
    all_sav = []
    for rate in sorted({r["rate_mbit"] for r in sel(res, group="fig8")}, key=lambda x: (x == 0, x)):
        cells, savs = [], []
        for svc in ("apache", "mysql", "tomcat"):
            m = med([mt(r) for r in ok(sel(res, service=svc, method="model", rate_mbit=rate, group="fig8"))])
            u = med([mt(r) for r in ok(sel(res, service=svc, method="uncompressed", rate_mbit=rate, group="fig8"))])
            if m and u:
                savs.append(1 - m / u)
                cells.append(f(100 * (1 - m / u), 1, " %"))
            else:
                cells.append("-")
        all_sav += savs
        best = None
        lv = [(mt(r), r["method"]) for r in f9 if r["rate_mbit"] == rate and r["service"] == sweep]
        if lv:
            best = min(lv)
        mm = med([mt(r) for r in ok(sel(res, service=sweep, method="model", rate_mbit=rate, group="fig8"))])
        dist = f(100 * (mm / best[0] - 1), 1, " %") if best and mm else "-"
        a(f"| {rate_name(rate)} | " + " | ".join(cells) + f" | {f(100 * statistics.mean(savs), 1, ' %') if savs else '-'} | "
          f"{f'{best[1]} {best[0]:.2f} s' if best else '-'} | {dist} |")
    if all_sav:
        a(f"\nAverage saving over all measured service/rate cells: **{100 * statistics.mean(all_sav):.1f} %** "
          f"(paper: 45.4 %).\n")
    return L


def _targets(res):
    """The targets table: client downtimes and the default / uncompressed time ratio."""
    L = []
    a = L.append
    a("## Targets\n")
    a("| target | measured (median) | runs | verdict | largest downtime stage (median s) |")
    a("|---|---|---|---|---|")

    def target_row(name, rs, limit, value_fn):
        vals = [value_fn(r) for r in ok(rs)]
        v = med(vals)
        if v is None:
            a(f"| {name} | not measured | 0 | - | - |")
            return
        splits = [stage_split(r) for r in ok(rs)]
        stages = {k: med([s[k] for s in splits]) for k in splits[0]}
        worst = max(stages.items(), key=lambda kv: kv[1] or 0)
        verdict = f"met ({(limit - v):.3f} s under)" if v <= limit else f"**missed** by {v - limit:.3f} s"
        a(f"| {name} | {v:.3f} s | {len(vals)} | {verdict} | {worst[0]} {worst[1]:.2f} "
          f"({', '.join(f'{k} {x:.2f}' for k, x in stages.items() if x is not None)}) |")

    ap_model = [r for r in res if r["service"] == "apache" and r["method"] == "model" and not r.get("ab")
                and not r.get("loss") and not r.get("schedule") and r.get("group") != "precopy"]
    target_row("apache client downtime, default, unshaped <= 1.0 s", [r for r in ap_model if r["rate_mbit"] == 0],
               TARGETS["apache_unshaped"], lambda r: r.get("client_downtime_s"))
    target_row("apache client downtime, default, 10 Mbit/s <= 1.5 s", [r for r in ap_model if r["rate_mbit"] == 10],
               TARGETS["apache_10"], lambda r: r.get("client_downtime_s"))
    for rate in sorted({r["rate_mbit"] for r in sel(res, service="mysql", method="model", group="fig8")}):
        target_row(f"MariaDB client downtime, default, {rate_name(rate)} <= 3 s",
                   sel(res, service="mysql", method="model", rate_mbit=rate, group="fig8"), TARGETS["mysql"],
                   lambda r: r.get("client_downtime_s"))
    for svc in ("mysql", "tomcat"):
        for rate in sorted({r["rate_mbit"] for r in sel(res, service=svc, group="fig8") if 0 < r["rate_mbit"] <= 20}):
            m = med([mt(r) for r in ok(sel(res, service=svc, method="model", rate_mbit=rate, group="fig8"))])
            u = med([mt(r) for r in ok(sel(res, service=svc, method="uncompressed", rate_mbit=rate, group="fig8"))])
            mw = med([r["wall_s"] for r in ok(sel(res, service=svc, method="model", rate_mbit=rate, group="fig8"))])
            uw = med([r["wall_s"] for r in ok(sel(res, service=svc, method="uncompressed", rate_mbit=rate, group="fig8"))])
            if m and u:
                rr = m / u
                verdict = "met" if rr <= TARGETS["ratio"] else f"**missed** by {rr - TARGETS['ratio']:.2f}"
                rows = ok(sel(res, service=svc, method="model", rate_mbit=rate, group="fig8"))
                splits = [stage_split(r) for r in rows]
                stages = {k: med([s[k] for s in splits]) for k in splits[0]}
                worst = max(stages.items(), key=lambda kv: kv[1] or 0)
                a(f"| {svc} total time default / uncompressed serial at {rate_name(rate)} <= 0.35 | "
                  f"{rr:.3f} ({m:.2f} s / {u:.2f} s); playbook wall {mw / uw:.3f} ({mw:.1f} s / {uw:.1f} s) | "
                  f"{len(rows)} | {verdict} | {worst[0]} {worst[1]:.2f} |")
    a("")
    return L


def _breakdown(res):
    """The default policy's downtime split into its stages, per service and rate."""
    L = []
    a = L.append
    a("## Downtime breakdown (default policy)\n")
    a("Stages as measured by the module: freeze+dump = `docker checkpoint` (CRIU freeze and dump into the tmpfs); "
      "transfer = stream incl. SSH connect and the receiver writing the last byte; restore = `docker start "
      "--checkpoint` on the target; switch-over = health check + address move + gratuitous ARP. The client "
      "column is what the polling client saw.\n")
    a("| service | rate | freeze+dump | transfer | restore | switch-over | module downtime | client downtime | runs |")
    a("|---|---|---|---|---|---|---|---|---|")
    for svc in ("apache", "mysql", "tomcat"):
        for rate in sorted({r["rate_mbit"] for r in sel(res, service=svc, method="model")}, key=lambda x: (x == 0, x)):
            rs = [r for r in ok(sel(res, service=svc, method="model", rate_mbit=rate)) if not r.get("ab")
                  and not r.get("loss") and not r.get("schedule")]
            if not rs:
                continue
            sp = [stage_split(r) for r in rs]
            a(f"| {svc} | {rate_name(rate)} | " + " | ".join(f(med([s[k] for s in sp])) for k in sp[0]) +
              f" | {f(med([mt(r) for r in rs]))} | {f(med([r.get('client_downtime_s') for r in rs]))} | {len(rs)} |")
    a("")
    return L


def _fig9(res, made):
    """Fig. 9: migration time and ratio per fixed lz4 level, the model controller beside them."""
    L = []
    a = L.append
    f9 = fig9_runs(res)
    if f9:
        a("## Migration time vs fixed lz4 level (Fig. 9)\n")
        if "fig9" in made:
            a(figure("Fig. 9", made['fig9']))
        keys = sorted({(r["service"], r["rate_mbit"]) for r in f9})
        a("| level | " + " | ".join(f"{s} @ {rate_name(r)}: time (ratio)" for s, r in keys) + " |")
        a("|---|" + "---|" * len(keys))
        for lv in range(1, 10):
            cells = []
            for s, rt in keys:
                rs = [r for r in f9 if r["service"] == s and r["rate_mbit"] == rt and r["method"] == f"lz4:{lv}"]
                cells.append(f"{f(med([mt(r) for r in rs]))} s ({f(med([r['ratio'] for r in rs]), 3)})" if rs else "-")
            a(f"| {lv} | " + " | ".join(cells) + " |")
        for s, rt in keys:
            m = ok(sel(res, service=s, method="model", rate_mbit=rt, group="fig8"))
            if m:
                a(f"\n{s} @ {rate_name(rt)}, model controller for comparison: {f(med([mt(r) for r in m]))} s, "
                  f"ratio {f(med([r['ratio'] for r in m]), 3)}, chose "
                  f"{', '.join(sorted({k for r in m for k in (r.get('codecs') or {})}))}.")
        a("")
    return L


def _fig5(res, made):
    """Fig. 5: serial against pipelined at the same settings."""
    L = []
    a = L.append
    f5 = ok([r for r in res if r.get("group") == "fig5"])
    if f5:
        a("## Serial vs pipelined at the same settings (Fig. 5)\n")
        if "fig5" in made:
            a(figure("Fig. 5", made['fig5']))
        a("| service | rate | policy | serial: transfer / migration time | pipelined: transfer / migration time | pipelined / serial (transfer) |")
        a("|---|---|---|---|---|---|")
        for s, rt in sorted({(r["service"], r["rate_mbit"]) for r in f5}):
            se = [r for r in f5 if r["service"] == s and r["rate_mbit"] == rt and r["method"].startswith("serial")]
            pi = [r for r in f5 if r["service"] == s and r["rate_mbit"] == rt and r["method"].startswith("pipelined")]
            st = med([r["stages"]["transfer_s"] for r in se])
            pt = med([r["stages"]["transfer_s"] for r in pi])
            a(f"| {s} | {rate_name(rt)} | {(se or pi)[0]['method'].split(':', 1)[1]} | {f(st)} s / {f(med([mt(r) for r in se]))} s | "
              f"{f(pt)} s / {f(med([mt(r) for r in pi]))} s | {f(pt / st if st and pt else None)} |")
        a("")
    return L


def _ab(res, made):
    """Fig. 6/7: ab's requests and throughput while a migration runs."""
    L = []
    a = L.append
    abr = [r for r in res if r.get("ab")]
    if abr:
        a("## Throughput and requests/s during a migration (Fig. 6/7)\n")
        if "ab" in made:
            a(figure("Fig. 6/7", made['ab']))
        a("`ab -q -r -c 100 -t 1 -s 2 http://10.213.0.101:4004/big.html` (512 KiB page) run back to back in "
          "1-second slices from the controller namespace for the whole window (like the paper's repeated ab "
          "runs); each point is one slice's completed requests/s and ab's transfer rate. A single long ab "
          "aborts for good when its connections to the frozen source hang (\"apr_pollset_poll: The timeout "
          "specified has expired\"), so a slice that aborts counts as a slice without answers and the next "
          "one starts. The load shares the 2 CPUs with the migration. tbf shapes traffic towards the edges, "
          "so ab's responses (edge to client) are not rate limited; the migration stream edge to edge is.\n")
        a("| method | rate | migration time | client downtime | ab requests | aborted slices | mean req/s | "
          "mean Mbit/s | req/s during the migration window |")
        a("|---|---|---|---|---|---|---|---|---|")
        for r in abr:
            ab = r["ab"]
            w0, w1 = r.get("ab_migration_window", [0, 0])
            inwin = [p["qps"] for p in ab["series"] if w0 <= p["t"] <= w1]
            a(f"| {LABEL.get(r['method'], r['method'])} | {rate_name(r['rate_mbit'])} | {f(mt(r))} s | "
              f"{f(r.get('client_downtime_s'))} s | {f(ab.get('requests'), 0)} | {ab.get('aborted_slices', '-')} | "
              f"{f(ab.get('rps'), 1)} | {f((ab.get('transfer_kBps') or 0) * 8 / 1000, 1)} | "
              f"{f(statistics.mean(inwin) if inwin else None, 1)} |")
        a("")
    return L


def _schedule(res, made):
    """The controller's choices under a changing rate."""
    L = []
    a = L.append
    sch = [r for r in res if r.get("schedule")]
    if sch:
        a("## Compression level and throughput under a changing rate\n")
        if "schedule" in made:
            a(figure("schedule", made['schedule']))
        for r in sch:
            steps = ", ".join(f"{s['t']:.1f} s: {s['rate_mbit']:g}" for s in r["schedule"])
            codecs = r.get("codecs") or {}
            since = "the freeze" if isinstance(r.get("schedule_anchor"), dict) else "the playbook start"
            a(f"- {r['service']}, {LABEL.get(r['method'], r['method'])}: rate steps (s since {since}: Mbit/s) {steps}; "
              f"migration time {f(mt(r))} s, ratio {f(r.get('ratio'), 3)}; raw bytes per codec:level: "
              + ", ".join(f"{k} {v[0] / 1e6:.1f} MB" for k, v in sorted(codecs.items())) +
              (f"; controller switches: {r.get('controller', {}).get('switches')}" if r.get("controller") else "")
              + ("" if r.get("ok") else f" - FAILED: {r.get('error')}"))
        a("")
    return L


def _loss(res):
    """Migrations under random loss."""
    L = []
    a = L.append
    lo = [r for r in res if r.get("loss")]
    if lo:
        a("## Random loss\n")
        a("nft `numgen random` drop on the ingress hook of both host-side veths, TSO/GSO off inside the "
          "namespaces (per-frame loss, see PLATFORM.md).\n")
        a("| service | method | rate | loss | migration time | client downtime | goodput Mbit/s | ok |")
        a("|---|---|---|---|---|---|---|---|")
        for r in lo:
            a(f"| {r['service']} | {LABEL.get(r['method'], r['method'])} | {rate_name(r['rate_mbit'])} | "
              f"{100 * r['loss']:.1f} % | {f(mt(r))} s | {f(r.get('client_downtime_s'))} s | {f(r.get('goodput_mbit'), 1)} | "
              f"{'yes' if r.get('ok') else 'no: ' + str(r.get('error'))[:120]} |")
        a("")
    return L


def _resources(res):
    """Bytes, ratio, link use, CPU and memory per Fig. 8 cell, and how the Podman-style rows count."""
    L = []
    a = L.append
    a("## Bytes, ratio, utilisation, CPU, memory (Fig. 8 runs, medians)\n")
    a("| service | method | rate | raw MB | stream MB | ratio | link MB (edge to edge) | link util. | goodput Mbit/s | "
      "compress CPU s | sender CPU s | receiver CPU s | sender / receiver peak RSS MB | source / target edge CPU s "
      "(sshd tree, dockerd) |")
    a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for svc in ("apache", "mysql", "tomcat"):
        for rate in sorted({r["rate_mbit"] for r in sel(res, service=svc, group="fig8")}, key=lambda x: (x == 0, x)):
            for m in METHODS:
                rs = ok(sel(res, service=svc, method=m, rate_mbit=rate, group="fig8"))
                if not rs:
                    continue

                def g(fn, rs=rs):
                    return med([fn(r) for r in rs])
                a(f"| {svc} | {m} | {rate_name(rate)} | {f(g(lambda r: r['bytes_raw'] / 1e6), 1)} | "
                  f"{f(g(lambda r: r['bytes_wire'] / 1e6), 2)} | {f(g(lambda r: r['ratio']), 3)} | "
                  f"{f(g(lambda r: r['link_bytes'] / 1e6 if r.get('link_bytes') is not None else None), 2)} | {f(g(lambda r: r.get('link_util')))} | "
                  f"{f(g(lambda r: r.get('goodput_mbit')), 1)} | {f(g(lambda r: r.get('compress_cpu_s')))} | "
                  f"{f(g(sender_cpu))} | {f(g(receiver_cpu))} | "
                  f"{f(g(lambda r: r['proc']['sender_rss_peak_mb']), 0)} / {f(g(lambda r: r['proc']['receiver_rss_peak_mb']), 0)} | "
                  f"{f(g(lambda r: r['cpu']['source']['ssh_s']), 1)}, {f(g(lambda r: r['cpu']['source']['docker_s']), 1)} / "
                  f"{f(g(lambda r: r['cpu']['target']['ssh_s']), 1)}, {f(g(lambda r: r['cpu']['target']['docker_s']), 1)} |")
    a("")
    a("Podman-style rows: compress CPU = tar + zstd -3 -T0 on the source; sender CPU = those plus the scp client; "
      "receiver CPU = tar + zstd -d + cp into the container (the target's sshd/scp side is not counted); the edge "
      "sshd-tree CPU is ~0 because nothing of it runs over the edges' sshd except the scp server; the archive is built, copied and unpacked "
      "one after the other (serial), and the container is created at import time as `podman container restore "
      "--import` does.\n")
    return L


# ----------------------------------------------------------------------------- pre-copy (issue 11)

PRECOPY_MARKERS = PRECOPY_BEGIN, PRECOPY_END = "<!-- precopy:begin -->", "<!-- precopy:end -->"
PRECOPY_JSON = "benchmarks-precopy.json"   # next to the report (docs/)
PRECOPY_NOTES = "benchmarks-precopy-notes.md"
PC_METHODS = ("model", "precopy")
PC_LABEL = {"model": "stop-and-copy (model controller)", "precopy": "warm pre-copy (model controller)"}
# The targets: client downtime of the pre-copy method per (service, rate), and total time.
PC_TARGETS = [("mysql", 10.0, 2.5, "MariaDB (>= 200k rows, writer) client downtime, 10 Mbit/s"),
              ("mysql", 100.0, 1.5, "MariaDB (>= 200k rows, writer) client downtime, 100 Mbit/s"),
              ("mysql-big", 20.0, 3.0, "MariaDB with a >= 1 GiB data volume (writer) client downtime, 20 Mbit/s"),
              ("mysql-sysbench", 0, 3.0, "MariaDB under sysbench oltp_read_write (6 threads) + writer, client "
               "downtime, unshaped"),
              ("tomcat", 10.0, 3.0, "tomcat client downtime, 10 Mbit/s"),
              ("apache", 0, 0.5, "apache client downtime, unshaped")]
# Cells in the order of the tables; a variant cell (bench --cells mysql-big:20) is its own "service" here.
PC_ORDER = ("mysql", "mysql-big", "mysql-sysbench", "tomcat", "apache")
PC_TOTAL_LIMIT = 1.3   # pre-copy total time (warm start to serving) / stop-and-copy, at 10 Mbit/s


def warm_s(r):
    """Time of the warm phase (rounds + their predictions): the service runs, nothing is frozen."""
    rounds = (r.get("precopy") or {}).get("rounds") or []
    return sum(x.get("seconds", 0.0) + x.get("predict_s", 0.0) for x in rounds)


def total_s(r):
    """Warm start (stop-and-copy: the freeze) to serving on the target, as the module measured it."""
    return warm_s(r) + (mt(r) or 0.0)


def _pc_cells(res):
    """The pre-copy rows, each under its cell's name as ``service``, and the (cell, rate) pairs in table order."""
    rows = [dict(r, service=cell_name(r)) for r in res if r.get("group") == "precopy"]
    return rows, sorted({(r["service"], r["rate_mbit"]) for r in rows},
                        key=lambda c: (PC_ORDER.index(c[0]) if c[0] in PC_ORDER else 9, c[1] == 0, c[1]))


def figure(title: str, rel: str) -> str:
    """A plot named by its path in the repository, as text, not as a link: the collection does not ship
    docs/img (galaxy.yml's build_ignore), and every link of its docs resolves in the installed copy
    (tests/unit/test_collection.py). ``rel`` is relative to docs/."""
    return f"{title}: `docs/{rel}` in the repository (plots are not shipped with the collection).\n"


def precopy_plot(data, img_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, cells = _pc_cells(data["results"])
    svcs = [s for s in PC_ORDER if any(c[0] == s for c in cells)]
    if not svcs:
        return None
    fig, axes = plt.subplots(1, len(svcs), figsize=(4.5 * len(svcs), 4), squeeze=False)
    for ax, svc in zip(axes[0], svcs):
        rates = sorted({c[1] for c in cells if c[0] == svc}, key=lambda x: (x == 0, x))
        # unshaped is drawn right of the highest rate (labelled), so every point has an x position
        xs = {rate: (rate if rate else max([x for x in rates if x] or [100.0]) * 10) for rate in rates}
        for m, marker in zip(PC_METHODS, ("s", "o")):
            pts = []
            for rate in rates:
                rs = ok(sel(rows, service=svc, method=m, rate_mbit=rate))
                for r in rs:
                    if r.get("client_downtime_s") is not None:
                        ax.scatter([xs[rate]], [r["client_downtime_s"]], marker=marker, alpha=.35,
                                   color="C0" if m == "model" else "C1")
                v = med([r.get("client_downtime_s") for r in rs])
                if v is not None:
                    pts.append((xs[rate], v))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=PC_LABEL[m],
                        color="C0" if m == "model" else "C1")
        for name_svc, rate, limit, _label in PC_TARGETS:
            if name_svc == svc and rate in xs:
                ax.scatter([xs[rate]], [limit], marker="_", s=400, color="red", zorder=5)
        ax.set_xscale("log")
        ax.set_xticks(list(xs.values()))
        ax.set_xticklabels([rate_name(r) for r in rates], fontsize=8)
        ax.set_xlabel("link rate (tbf)")
        ax.set_ylabel("client downtime (s)")
        ax.set_ylim(bottom=0)
        ax.set_title(svc + (" + writer" if any(r.get("writer") for r in sel(rows, service=svc)) else ""))
        ax.grid(alpha=.3)
    axes[0][0].legend(fontsize=8, title="red bar: issue 11 target", title_fontsize=7)
    fig.tight_layout()
    os.makedirs(img_dir, exist_ok=True)
    fig.savefig(os.path.join(img_dir, "precopy_downtime_vs_rate.png"), dpi=110)
    plt.close(fig)
    return "img/precopy_downtime_vs_rate.png"


def precopy_section(data, img_dir):
    """The section "Pre-copy vs stop-and-copy (issue 11)" as lines, markers included; every number from ``data``."""
    rows, cells = _pc_cells(data["results"])
    img = precopy_plot(data, img_dir)
    return [PRECOPY_BEGIN, *_pc_intro(data, rows), *_pc_loads(rows), "",
            *([figure("client downtime vs rate, pre-copy vs stop-and-copy", img)] if img else []),
            *_pc_table(rows, cells), *_pc_targets(rows, cells), *_pc_rounds(rows, cells), *_pc_where_time(rows, cells),
            *hand_notes(os.path.join(os.path.dirname(img_dir), PRECOPY_NOTES)), PRECOPY_END]


def _pc_intro(data, rows):
    """The header: the command, the host, failed and left-out runs, the methods and the measures."""
    L = []
    a = L.append
    a("## Pre-copy vs stop-and-copy (issue 11)\n")
    a(f"Generated by `bench/bench_report.py` from `docs/{PRECOPY_JSON}` (rewrite: `python3 bench/migration_bench.py "
      f"--from-json docs/{PRECOPY_JSON}`).\n")
    a(f"- command: `{data['command']}`")
    codes = sorted({r.get("code") for r in rows if r.get("code")})
    a(f"- started {data['started']}, {len(rows)} migrations in {data['elapsed_s']:.0f} s; code {', '.join(codes) or '-'}; "
      f"host: {data['host']['cpus']} CPUs, kernel {data['host']['kernel']}")
    failed = [r for r in rows if not r.get("ok")]
    a(f"- failed migrations: {len(failed)}" + "".join(
        f"\n  - {r['service']} {r['method']} @ {rate_name(r['rate_mbit'])} (repeat {r['repeat']}): "
        f"{str(r.get('error', ''))[:300]}" for r in failed))
    if data.get("skipped"):
        a(f"- **left out** (`--stop-at` deadline): {len(data['skipped'])} cases: " + ", ".join(
            f"{c['svc']} {c['method']} @ {rate_name(c['rate'])} (repeat {c['rep']})" for c in data["skipped"]))
    a("- methods, same run, interleaved per repeat: **stop-and-copy** = `migrate.yml -e edgemig_precopy=false` "
      "(model controller, everything crosses after the freeze); **pre-copy** = `-e edgemig_precopy=true` (warm rounds "
      "while the service runs until the final round is predicted to fit `edgemig_downtime_target` [1.0 s], stops "
      "converging, or max rounds [5]; the freeze then sends only what differs).")
    a("- **client downtime**: the benchmark's 20 ms poller (longest gap between good answers). **total time** = "
      "warm rounds incl. their predictions (sum of the report's `precopy.rounds[].seconds + predict_s`) + freeze to "
      "serving (`downtime_s`); for stop-and-copy just freeze to serving. **wall** = the whole `ansible-playbook` run.")
    return L


def _pc_loads(rows):
    """The load each kind of cell ran under (writer, 1 GiB volume, sysbench), from the runs' records."""
    L = []
    a = L.append
    wr = [r["writer"] for r in rows if r.get("writer")]
    if wr:
        a(f"- MariaDB cells: `{FILL_TABLE_NAME}` filled to {min(w.get('fill_rows', 0) for w in wr)} rows (batched INSERTs, "
          "once, read back into the buffer pool before every case), then a writer (lab/labutil.py `Writer`, one row "
          "per INSERT + COMMIT through the service address; its table, with a random-key index, emptied before every "
          "case since c537940) at a target of "
          f"{wr[0].get('target_rate'):g} rows/s ({wr[0].get('threads')} connection(s)) from 3 s before each migration "
          "to 1 s after the service answers again; every acknowledged row is then looked up.")
    big = [r for r in rows if r.get("big_volume")]
    if big:
        a("- `mysql-big` cells: rows of 1000 random bytes as hex added to `bench_bulk` until MariaDB's data volume "
          f"holds >= {big[0]['big_volume']['target_mib']} MiB (`du` of the volume before each case: "
          f"{', '.join(str(r['big_volume']['volume_mib']) for r in big)} MiB).")
    sb = [r for r in rows if r.get("sysbench")]
    if sb:
        a(f"- `mysql-sysbench` cells: `sysbench oltp_read_write` ({sb[0]['sysbench']['threads']} threads, 4 tables x "
          "25k rows, `--mysql-ignore-errors=all` so it reconnects, and started again when it gives up: its one "
          "reconnect is refused while the service is frozen) through the service address from 3 s before each "
          "migration to its end, beside the writer; transactions/s before / after: "
          + ", ".join(f"{r['sysbench']['tps_before']:g} / {r['sysbench']['tps_after']:g}"
                      + (f" ({r['sysbench']['restarts']} restart(s))" if r["sysbench"].get("restarts") else "")
                      + ("" if r["sysbench"]["ran_through"] else " (no load after the migration)") for r in sb) + ".")
    return L


def _pc_table(rows, cells):
    """Per cell and method: the medians of downtime, stages, times, bytes and the writer's figures."""
    L = []
    a = L.append
    a("### Per cell (median over the runs; every run's client downtime in brackets)\n")
    a("| service | rate | method | runs | client downtime s | checkpoint | transfer | restore | health+switch | "
      "module downtime | total time | wall | stream MB (final) | lost rows | writer rows/s before / during | "
      "writer longest gap s |")
    a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for svc, rate in cells:
        for m in PC_METHODS:
            rs = ok(sel(rows, service=svc, method=m, rate_mbit=rate))
            if not rs:
                n_fail = len(sel(rows, service=svc, method=m, rate_mbit=rate))
                if n_fail:
                    a(f"| {svc} | {rate_name(rate)} | {m} | 0 ({n_fail} failed) |" + " - |" * 12)
                continue
            splits = [stage_split(r) for r in rs]

            def g(fn, rs=rs):
                return med([fn(r) for r in rs])
            every = ", ".join(f(r.get("client_downtime_s")) for r in rs)
            ws = [r["writer"] for r in rs if r.get("writer")]
            lost = sum(w.get("lost_rows", 0) for w in ws) if ws else None
            a(f"| {svc} | {rate_name(rate)} | {m} | {len(rs)} | **{f(g(lambda r: r.get('client_downtime_s')))}** "
              f"({every}) | {f(med([s['freeze+dump'] for s in splits]))} | {f(med([s['transfer'] for s in splits]))} | "
              f"{f(med([s['restore'] for s in splits]))} | {f(med([s['switch-over'] for s in splits]))} | "
              f"{f(g(mt))} | {f(g(total_s))} | {f(g(lambda r: r.get('wall_s')), 1)} | "
              f"{f(g(lambda r: r['bytes_wire'] / 1e6))} | {lost if lost is not None else '-'} | "
              + (f"{f(med([w.get('rate_before_s') for w in ws]), 0)} / {f(med([w.get('rate_during_s') for w in ws]), 0)} | "
                 f"{f(med([w.get('longest_gap_s') for w in ws]))} |" if ws else "- | - |"))
    a("")
    a("Stages as the module reports them: checkpoint = CRIU freeze + dump; transfer = the final stream (after the "
      "freeze); restore = `docker start --checkpoint` on the target; health+switch = health check + address move. "
      "Stream MB is what crossed after the freeze (`bytes_wire`).\n")
    return L


def _pc_targets(rows, cells):
    """The issue's targets against the medians: downtimes, total time, rows lost, writer rate."""
    L = []
    a = L.append
    a("### Targets\n")
    a("| target | pre-copy (median) | stop-and-copy, same run (median) | runs | verdict | stage holding the time "
      "(pre-copy, median s) |")
    a("|---|---|---|---|---|---|")
    for svc, rate, limit, label in PC_TARGETS:
        pc = ok(sel(rows, service=svc, method="precopy", rate_mbit=rate))
        sc = ok(sel(rows, service=svc, method="model", rate_mbit=rate))
        v = med([r.get("client_downtime_s") for r in pc])
        vs = med([r.get("client_downtime_s") for r in sc])
        if v is None:
            tried = sel(rows, service=svc, method="precopy", rate_mbit=rate)
            a(f"| {label} <= {limit:g} s | {'failed' if tried else 'not measured'} | {f(vs)} | 0 | - | - |")
            continue
        splits = [stage_split(r) for r in pc]
        stages = {k: med([s[k] for s in splits]) for k in splits[0]}
        worst = max(stages.items(), key=lambda kv: kv[1] or 0)
        verdict = f"met ({limit - v:.3f} s under)" if v <= limit else f"**missed** by {v - limit:.3f} s"
        a(f"| {label} <= {limit:g} s | {v:.3f} s | {f(vs, 3)} s | {len(pc)} | {verdict} | {worst[0]} {worst[1]:.2f} "
          f"({', '.join(f'{k} {x:.2f}' for k, x in stages.items() if x is not None)}) |")
    for svc in sorted({c[0] for c in cells if c[1] == 10.0}):
        pc = ok(sel(rows, service=svc, method="precopy", rate_mbit=10.0))
        sc = ok(sel(rows, service=svc, method="model", rate_mbit=10.0))
        tp, ts = med([total_s(r) for r in pc]), med([total_s(r) for r in sc])
        wp, wsc = med([r.get("wall_s") for r in pc]), med([r.get("wall_s") for r in sc])
        if tp is None or not ts:
            a(f"| {svc} total time pre-copy / stop-and-copy at 10 Mbit/s <= {PC_TOTAL_LIMIT:g} | not measured | | 0 | - | - |")
            continue
        q = tp / ts
        verdict = f"met ({PC_TOTAL_LIMIT - q:.2f} under)" if q <= PC_TOTAL_LIMIT else f"**missed** by {q - PC_TOTAL_LIMIT:.2f}"
        a(f"| {svc} total time pre-copy / stop-and-copy at 10 Mbit/s <= {PC_TOTAL_LIMIT:g} | {q:.2f} ({tp:.2f} s, "
          f"of it warm {med([warm_s(r) for r in pc]):.2f} s) | {ts:.2f} s | {min(len(pc), len(sc))} | {verdict} | "
          f"playbook wall {f(wp, 1)} s vs {f(wsc, 1)} s = {f(wp / wsc if wp and wsc else None)} |")
    lost_all = [r["writer"].get("lost_rows") for r in rows if r.get("writer")]
    if lost_all:
        a(f"| 0 acknowledged rows lost in every run | {sum(x or 0 for x in lost_all)} lost over {len(lost_all)} runs "
          f"({sum(r['writer'].get('acked_rows', 0) for r in rows if r.get('writer'))} acknowledged) | | {len(lost_all)} | "
          f"{'met' if not any(lost_all) else '**missed**'} | - |")
    before = [r["writer"].get("rate_before_s") for r in rows if r.get("writer")]
    if before:
        low = [x for x in before if x is None or x < 200]
        a(f"| writer >= 200 acknowledged rows/s (steady rate in the 2.5 s before each migration) | "
          f"min {min(x or 0 for x in before):.1f} rows/s | | {len(before)} | "
          f"{'met' if not low else f'**missed** in {len(low)} of {len(before)} runs'} | - |")
    a("")
    return L


def _pc_rounds(rows, cells):
    """Per pre-copy run: the warm rounds, why they ended, the predicted against the actual final round."""
    L = []
    a = L.append
    a("### Warm rounds, bytes per round, predicted vs actual final round\n")
    a("Per pre-copy run: each warm round's raw / wire MB and seconds; why the warm phase ended (`precopy.reason`); "
      "the last round's prediction of the final round (`predicted_final_bytes` raw, and / the warm rate = "
      "`predicted_final_s`) against what the freeze actually sent (`precopy.final`: raw, wire, warm pages sent as "
      "references, and the transfer stage).\n")
    a("| service | rate | run | rounds: raw/wire MB (s + prediction s) | reason | predicted final: raw MB / s | "
      "actual final: raw MB (of it not referenced) / wire MB / pages referenced / transfer s |")
    a("|---|---|---|---|---|---|---|")
    for svc, rate in cells:
        for r in ok(sel(rows, service=svc, method="precopy", rate_mbit=rate)):
            pc = r.get("precopy") or {}
            rounds = pc.get("rounds") or []
            fin = pc.get("final") or {}
            last = rounds[-1] if rounds else {}
            rtxt = "; ".join(f"{x['bytes_raw'] / 1e6:.1f}/{x['bytes_wire'] / 1e6:.1f} "
                             f"({x['seconds']:.1f} + {x.get('predict_s', 0.0):.1f})" for x in rounds) or "-"
            reason = str(pc.get("reason", "-")).split(":", maxsplit=1)[0]
            pred = (f"{last['predicted_final_bytes'] / 1e6:.1f} / {f(last.get('predicted_final_s'))}"
                    if last.get("predicted_final_bytes") is not None else "-")
            unref = fin.get("bytes_raw", 0) - PAGE_SIZE * fin.get("pages_referenced", 0)
            act = (f"{fin.get('bytes_raw', 0) / 1e6:.1f} ({unref / 1e6:.1f}) / {fin.get('bytes_wire', 0) / 1e6:.2f} / "
                   f"{fin.get('pages_referenced', 0)} / {f(fin.get('transfer_s'))}" if fin else "-")
            a(f"| {svc} | {rate_name(rate)} | {r['repeat']} | {rtxt} | {reason} | {pred} | {act} |")
    a("")
    a("`bytes_raw` of the final round counts warm pages sent as references (P_WARM, a few bytes each on the wire) at "
      "their 4 KiB; the figure in brackets leaves them out and is the one to compare with the prediction. A prediction "
      "is the changed bytes found by re-reading and re-hashing the warmed state (`predict_s`, service still running) "
      "divided by the last round's raw rate.\n")
    return L


def _pc_where_time(rows, cells):
    """Per cell: what pre-copy took off the downtime and what it cannot (checkpoint, restore)."""
    L = []
    a = L.append
    a("### Where the time goes (medians, computed from the runs above)\n")
    for svc, rate in cells:
        pc = ok(sel(rows, service=svc, method="precopy", rate_mbit=rate))
        sc = ok(sel(rows, service=svc, method="model", rate_mbit=rate))
        if not pc or not sc:
            continue
        sp = [stage_split(r) for r in pc]
        ss = [stage_split(r) for r in sc]
        cr_p = med([x["freeze+dump"] + x["restore"] for x in sp])
        a(f"- {svc} @ {rate_name(rate)}: the transfer after the freeze fell from {f(med([x['transfer'] for x in ss]))} s "
          f"to {f(med([x['transfer'] for x in sp]))} s ({f(med([r['bytes_wire'] / 1e6 for r in sc]))} -> "
          f"{f(med([r['bytes_wire'] / 1e6 for r in pc]))} MB on the wire); checkpoint + restore, which pre-copy does not "
          f"shorten, are {f(cr_p)} s of the pre-copy downtime {f(med([mt(r) for r in pc]))} s "
          f"(stop-and-copy: {f(med([x['freeze+dump'] + x['restore'] for x in ss]))} s); the warm phase took "
          f"{f(med([warm_s(r) for r in pc]), 1)} s, of it {f(med([sum(x.get('predict_s', 0.0) for x in r['precopy']['rounds']) for r in pc]), 1)} s "
          f"predicting the final round.{criu_share(pc + sc)}")
    a("")
    return L


FILL_TABLE_NAME = "bench_fill"


def write_precopy(data, path):
    """The pre-copy section of ``path`` (between PRECOPY_MARKERS) from a run's JSON; every other byte kept."""
    doc_section.read_document(path, PRECOPY_MARKERS, new_doc())  # a doc without the markers: refused before the plot
    doc_dir = os.path.dirname(os.path.abspath(path))
    block = "\n".join(precopy_section(data, os.path.join(doc_dir, "img")))
    doc_section.write_section(path, PRECOPY_MARKERS, block, skeleton=new_doc())
