"""make bench's figures: the table, the ratios, the JSON and the plot.

    python bench/report.py FIGURES.json OUTDIR

reads what bench/run.py wrote in the guest and writes OUTDIR/bench.json
(the same figures) and OUTDIR/bench.png: frames/s and CPU per frame
against frame size, log scales, one line per path, memcpy dashed as the
bound of a path that copies each frame once. Pure functions, so the host
tests run them on a fixed figures dict.
"""

import json
import sys
from pathlib import Path

# Plot and table order; memcpy last, as the bound.
ORDER = ["vcam zero-copy", "vcam copy", "v4l2loopback",
         "vcam-producer copy (py)", "v4l2loopback write() (py)", "memcpy"]


def rows(figures):
    """One row per (size, path): frames over seconds of all rounds, CPU per frame
    weighted by frames, and the spread of the rounds' rates."""
    groups = {}
    for r in figures["runs"]:
        groups.setdefault((r["width"], r["height"], r["path"]), []).append(r)
    out = []
    for (w, h, path), runs in groups.items():
        frames = sum(r["frames"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        out.append({
            "size": f"{w}x{h}", "width": w, "height": h, "path": path,
            "bytes_per_frame": runs[0]["bytes_per_frame"],
            "rounds": len(runs), "frames": frames,
            "fps": frames / seconds if seconds else 0.0,
            "fps_min": min(r["fps"] for r in runs), "fps_max": max(r["fps"] for r in runs),
            "cpu_us_per_frame": sum(r["cpu_us_per_frame"] * r["frames"] for r in runs) / frames if frames else 0.0,
        })
    rank = {p: i for i, p in enumerate(ORDER)}
    return sorted(out, key=lambda r: (r["width"] * r["height"], rank.get(r["path"], len(ORDER)), r["path"]))


def ratios(table_rows):
    """(label, size, value) for the ratios that carry over to hardware."""
    by = {(r["size"], r["path"]): r for r in table_rows}
    pairs = [("vcam zero-copy / v4l2loopback fps", "vcam zero-copy", "v4l2loopback"),
             ("vcam copy / v4l2loopback fps", "vcam copy", "v4l2loopback"),
             ("vcam copy / memcpy fps", "vcam copy", "memcpy"),
             ("v4l2loopback / memcpy fps", "v4l2loopback", "memcpy"),
             ("vcam-producer / write() loop fps (py)", "vcam-producer copy (py)", "v4l2loopback write() (py)")]
    out = []
    for label, a, b in pairs:
        for size in dict.fromkeys(r["size"] for r in table_rows):
            if (size, a) in by and (size, b) in by and by[(size, b)]["fps"]:
                out.append((label, size, by[(size, a)]["fps"] / by[(size, b)]["fps"]))
    return out


def table(figures):
    c = figures["conditions"]
    lines = [f"YUYV frames through each path, kernel {c['kernel']}, {c['cpus']} CPUs, "
             f"{c['rounds']} interleaved round(s) of {c['seconds_per_row']:g} s a row"
             + (f", v4l2loopback {c['v4l2loopback']}" if c.get("v4l2loopback") else ", no v4l2loopback rows"),
             f"{'size':>9}  {'path':<29} {'MiB/frame':>9} {'frames':>7} {'fps':>9} {'(min-max)':>17} {'CPU us/frame':>12}"]
    table_rows = rows(figures)
    for r in table_rows:
        spread = f"{r['fps_min']:.0f}-{r['fps_max']:.0f}"
        lines.append(f"{r['size']:>9}  {r['path']:<29} {r['bytes_per_frame'] / 2**20:>9.2f} {r['frames']:>7}"
                     f" {r['fps']:>9.1f} {spread:>17} {r['cpu_us_per_frame']:>12.1f}")
    lines.append("CPU: the whole guest's busy time per frame (both sides and the drivers' work)")
    found = ratios(table_rows)
    if found:
        lines.append("")
        lines.append("ratios (these carry over to hardware; the absolute rates do not):")
        for label, size, value in found:
            lines.append(f"  {label:<40} {size:>9}  {value:8.2f}x")
    return "\n".join(lines)


def plot(figures, png):
    import matplotlib
    matplotlib.use("Agg")  # no display in the lab
    import matplotlib.pyplot as plt

    table_rows = rows(figures)
    fig, (ax_fps, ax_cpu) = plt.subplots(1, 2, figsize=(12, 4.8))
    paths = list(dict.fromkeys(r["path"] for r in table_rows))
    for path in paths:
        mine = [r for r in table_rows if r["path"] == path]
        x = [r["bytes_per_frame"] / 2**20 for r in mine]
        style = {"linestyle": "--", "color": "black"} if path == "memcpy" else {"marker": "o"}
        label = "memcpy of one frame (bound)" if path == "memcpy" else path
        ax_fps.plot(x, [r["fps"] for r in mine], label=label, **style)
        ax_cpu.plot(x, [r["cpu_us_per_frame"] for r in mine], label=label, **style)
    sizes = {r["bytes_per_frame"] / 2**20: r["size"] for r in table_rows}
    for ax, title in ((ax_fps, "frames per second"), (ax_cpu, "CPU per frame (us, whole guest)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(sizes), [f"{s}\n{m:.1f} MiB" for m, s in sizes.items()])
        ax.minorticks_off()
        ax.set_xlabel("YUYV frame size")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    ax_fps.legend(fontsize="small")
    c = figures["conditions"]
    fig.suptitle(f"vcam, v4l2loopback and memcpy in one guest boot ({c['kernel']}, {c['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def write(figures, outdir):
    """OUTDIR/bench.json and OUTDIR/bench.png; their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    data = dict(figures, rows=rows(figures))
    (outdir / "bench.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(figures, outdir / "bench.png")
    return outdir / "bench.json", outdir / "bench.png"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit("usage: python bench/report.py FIGURES.json OUTDIR")
    try:
        figures = json.loads(Path(argv[0]).read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"bench: no figures to plot ({e})")
    for path in write(figures, argv[1]):
        print(f"bench: wrote {path}")


if __name__ == "__main__":
    main()
