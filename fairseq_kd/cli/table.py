"""fairseq-kd-table: a BLEU / speed / size table in the spirit of Kim & Rush (2016) Table 1, and a
Pareto plot, from the JSON files of fairseq-kd-speed.

    fairseq-kd-table speed1.json speed2.json --reference teacher --output-md table.md --output-png pareto.png

One row per model and engine (fairseq-kd-speed --engine; files without engines are fairseq's). BLEU greedy = beam 1, BLEU beam = beam 5 if measured, else the largest beam measured
(--beam to choose); words/s at --batch-size (default: the largest measured). Speed-up and delta BLEU are
against the --reference model's beam row, decoded by --reference-engine (default fairseq, else its first
engine): by default the model named `teacher` when there is one, else the first model; the table's caption
says which, so speed-ups compare engines too. Files measured on different data, references, sentence counts or thread
counts are refused (--allow-mixed marks the table instead). The plot shows BLEU (beam) against
words/s (beam, log scale), point area proportional to parameters, and the Pareto front (no other model
is both faster and better).
"""
import argparse
import json
import os

from ..errors import FairseqKDError
from ..outputs import atomic_path, atomic_write_text, output_file

COMPARABLE = ("subset", "sentences", "ref")


def load_rows(paths, allow_mixed=False):
    rows, settings = [], {}
    for path in paths:
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise FairseqKDError(f"cannot read speed JSON {path}: {e}") from e
        setting = {k: report["data"].get(k) for k in COMPARABLE}
        setting["threads"] = report["environment"].get("threads")
        for key, value in setting.items():
            settings.setdefault(key, {}).setdefault(json.dumps(value), []).append(path)
        rows.extend(report["results"])
    mixed = {k: v for k, v in settings.items() if len(v) > 1}
    if mixed and not allow_mixed:
        detail = "; ".join(f"{k}: " + " vs ".join(f"{json.loads(val)} ({', '.join(ps)})" for val, ps in v.items())
                           for k, v in mixed.items())
        raise FairseqKDError(f"these measurements are not comparable ({detail}); use --allow-mixed to tabulate anyway")
    return rows, sorted(mixed)


def engine_of(row) -> str:
    return row.get("engine", "fairseq")


def pick(rows, model, engine, beam, batch_size):
    for r in rows:
        if r["model"] == model and engine_of(r) == engine and r["beam"] == beam and r["batch_size"] == batch_size:
            return r
    return None


def reference_engine(rows, reference, engine=None):
    """--reference-engine, else fairseq when the reference has fairseq rows, else its first engine."""
    engines = list(dict.fromkeys(engine_of(r) for r in rows if r["model"] == reference))
    if engine is not None:
        if engine not in engines:
            raise FairseqKDError(f"reference '{reference}' has no rows of engine {engine} (its engines: {', '.join(engines)})")
        return engine
    return "fairseq" if "fairseq" in engines else engines[0]


DEFAULT_REFERENCE, DEFAULT_BEAM = "teacher", 5


def default_reference(rows):
    """The model named `teacher` when there is one, else the first model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    return DEFAULT_REFERENCE if DEFAULT_REFERENCE in models else models[0]


def summarize(rows, reference, beam=None, batch_size=None, ref_engine=None):
    models = list(dict.fromkeys(r["model"] for r in rows))
    keys = list(dict.fromkeys((r["model"], engine_of(r)) for r in rows))
    beams = {r["beam"] for r in rows}
    beam = beam or (DEFAULT_BEAM if DEFAULT_BEAM in beams else max(beams))
    batch_size = batch_size or max(r["batch_size"] for r in rows)
    if reference not in models:
        raise FairseqKDError(f"reference model '{reference}' is not in the JSONs (models: {', '.join(models)})")
    ref_engine = reference_engine(rows, reference, ref_engine)
    ref = pick(rows, reference, ref_engine, beam, batch_size)
    if ref is None:
        raise FairseqKDError(f"reference '{reference}' ({ref_engine}) has no beam {beam} / batch {batch_size} row")
    out = []
    for m, engine in keys:
        greedy, search = pick(rows, m, engine, 1, batch_size), pick(rows, m, engine, beam, batch_size)
        if not (greedy or search):
            continue
        any_row = greedy or search
        wps = lambda r: r["words_per_s"]["median"] if r else None  # noqa: E731
        out.append({
            "model": m, "engine": engine, "params": any_row["params_total"], "nonzero": any_row["params_nonzero"],
            "size_mb": any_row["file_size_bytes"] / 1e6,
            "bleu_greedy": greedy.get("bleu") if greedy else None, "bleu_beam": search.get("bleu") if search else None,
            "wps_greedy": wps(greedy), "wps_beam": wps(search),
            "speedup_greedy": wps(greedy) / wps(ref) if greedy else None,
            "speedup_beam": wps(search) / wps(ref) if search else None,
            "delta_bleu_greedy": greedy["bleu"] - ref["bleu"] if greedy and "bleu" in greedy and "bleu" in ref else None,
            "delta_bleu_beam": search["bleu"] - ref["bleu"] if search and "bleu" in search and "bleu" in ref else None,
        })
    return out, beam, batch_size, ref_engine


def fmt(value, spec, signed=False):
    if value is None:
        return "–"
    return format(value, ("+" if signed else "") + spec)


def params_text(n):
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def markdown(summary, reference, beam, batch_size, mixed=(), reference_given=True, ref_engine="fairseq"):
    head = (f"| Model | Engine | Params | Nonzero | Size (MB) | BLEU greedy | BLEU beam {beam} | Words/s greedy "
            f"| Words/s beam {beam} | Speed-up greedy | Speed-up beam {beam} | ΔBLEU greedy | ΔBLEU beam {beam} |")
    lines = [head, "|" + "---|" * 13]
    for s in summary:
        lines.append(
            f"| {s['model']} | {s['engine']} | {params_text(s['params'])} | {params_text(s['nonzero'])} | {s['size_mb']:.1f} "
            f"| {fmt(s['bleu_greedy'], '.2f')} | {fmt(s['bleu_beam'], '.2f')} "
            f"| {fmt(s['wps_greedy'], '.0f')} | {fmt(s['wps_beam'], '.0f')} "
            f"| {fmt(s['speedup_greedy'], '.1f')}x | {fmt(s['speedup_beam'], '.1f')}x "
            f"| {fmt(s['delta_bleu_greedy'], '.2f', True)} | {fmt(s['delta_bleu_beam'], '.2f', True)} |")
    lines.append("")
    how = "" if reference_given else " (the default reference: the model named teacher, else the first model)"
    lines.append(f"Speed-up and ΔBLEU against {reference} ({ref_engine}) with beam {beam}{how}; words/s at batch "
                 f"size {batch_size}.")
    if mixed:
        lines.append(f"**Warning: mixed measurement settings ({', '.join(mixed)}); rows are not strictly comparable.**")
    return "\n".join(lines) + "\n"


def pareto_front(points):
    """Indices of the points that no other point beats on both speed and BLEU."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot(summary, beam, path):
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's logging setup lets its DEBUG lines through
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(s["wps_beam"], s["bleu_beam"], s) for s in summary if s["wps_beam"] and s["bleu_beam"] is not None]
    if not pts:
        raise FairseqKDError("no model has both BLEU and words/s at the chosen beam: nothing to plot (pass --ref to the speed tool)")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    biggest = max(p[2]["params"] for p in pts)
    for x, y, s in pts:
        ax.scatter(x, y, s=40 + 600 * s["params"] / biggest, alpha=0.6)
        label = s["model"] if s["engine"] == "fairseq" else f"{s['model']} ({s['engine']})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    front = pareto_front([(x, y) for x, y, _ in pts])
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"target words/s (beam {beam}, log scale)")
    ax.set_ylabel(f"BLEU (beam {beam})")
    ax.set_title("BLEU vs decoding speed (point area ~ parameters)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-kd-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+")
    p.add_argument("--reference", default=None, help="model name the speed-up and delta BLEU are against "
                                                      "(default: teacher if there is one, else the first model)")
    p.add_argument("--reference-engine", default=None,
                   help="engine of the reference's rows (default: fairseq if measured, else its first engine)")
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--output-md", required=True)
    p.add_argument("--output-png", default=None)
    p.add_argument("--allow-mixed", action="store_true")
    args = p.parse_args(argv)
    output_file(args.output_md, "--output-md")
    if args.output_png:
        output_file(args.output_png, "--output-png")
    rows, mixed = load_rows(args.json, args.allow_mixed)
    if not rows:
        raise FairseqKDError(f"no measured rows in {', '.join(args.json)}")
    reference = args.reference or default_reference(rows)
    summary, beam, batch_size, ref_engine = summarize(rows, reference, args.beam, args.batch_size,
                                                      args.reference_engine)
    text = markdown(summary, reference, beam, batch_size, mixed, reference_given=args.reference is not None,
                    ref_engine=ref_engine)
    atomic_write_text(args.output_md, text)
    print(text)
    if args.output_png:
        plot(summary, beam, args.output_png)
        print(f"wrote {args.output_png} ({os.path.getsize(args.output_png)} bytes)")


if __name__ == "__main__":
    main()
