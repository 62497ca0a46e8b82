"""`evaluate`'s and `compare`'s output folders: JSON, Markdown, a self-contained HTML page, PNGs.

A report is built once as a list of blocks (heading, paragraph, table, image) and rendered twice:
to Markdown (images linked as files beside it) and to HTML (images embedded as data URIs, so the
page can be mailed or archived alone). Every file is written atomically.
"""

import base64
import html
import os

from keras_mamsf.evaluation import plots
from keras_mamsf.evaluation.evaluate import thresholds_file
from keras_mamsf.evaluation.plots import p_text, value_text
from keras_mamsf.utils import write_bytes_atomic, write_json_atomic, write_text_atomic

EVALUATION_PLOTS = {"roc_curves.png": "ROC curves", "pr_curves.png": "Precision-recall curves",
                    "reliability.png": "Reliability diagram", "auc_forest.png": "Per-class AUC"}


def write_evaluation(out_dir, predictions, metrics):
    """Writes predictions.npz, metrics.json, thresholds.json (when chosen), the four PNGs,
    report.md and report.html into `out_dir`; returns `{name: path}`."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"predictions": predictions.save(os.path.join(out_dir, "predictions.npz"))}
    paths["metrics"] = os.path.join(out_dir, "metrics.json")
    write_json_atomic(paths["metrics"], metrics)
    if metrics["thresholds"]:
        paths["thresholds"] = os.path.join(out_dir, "thresholds.json")
        write_json_atomic(paths["thresholds"], thresholds_file(metrics["thresholds"]))
    images = {"roc_curves.png": plots.curve_grid(predictions, metrics, "roc"),
              "pr_curves.png": plots.curve_grid(predictions, metrics, "pr"),
              "reliability.png": plots.reliability_diagram(predictions, metrics),
              "auc_forest.png": plots.auc_forest(metrics)}
    for name, data in images.items():
        paths[name] = os.path.join(out_dir, name)
        write_bytes_atomic(paths[name], data)
    blocks = evaluation_blocks(metrics, images)
    paths["report.md"] = os.path.join(out_dir, "report.md")
    paths["report.html"] = os.path.join(out_dir, "report.html")
    write_text_atomic(paths["report.md"], to_markdown(blocks))
    write_text_atomic(paths["report.html"], to_html(blocks, "keras-mamsf evaluation"))
    return paths


def write_comparison(out_dir, comparison, note=None):
    """Writes compare.json, delta_forest.png, compare.md and compare.html into `out_dir`; `note` (e.g. that
    the data are synthetic) heads the page."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "compare.json"),
             "delta_forest.png": os.path.join(out_dir, "delta_forest.png")}
    write_json_atomic(paths["json"], comparison)
    image = plots.delta_forest(comparison)
    write_bytes_atomic(paths["delta_forest.png"], image)
    blocks = comparison_blocks(comparison, {"delta_forest.png": image}, note)
    paths["compare.md"] = os.path.join(out_dir, "compare.md")
    paths["compare.html"] = os.path.join(out_dir, "compare.html")
    write_text_atomic(paths["compare.md"], to_markdown(blocks))
    write_text_atomic(paths["compare.html"], to_html(blocks, "keras-mamsf comparison"))
    return paths


def resampling_sentence(result):
    what = "patients (all of a patient's images together)" if result["resampling"] == "patient" else \
        "images (no patient ids in the predictions: intervals may be too narrow if patients have several images)"
    return (f"{int(result['confidence'] * 100)}% intervals: percentile bootstrap, {result['n_boot']} resamples of "
            f"{what}, seed {result['seed']}.")


def _fact(key, value):
    """One row of a report's facts table, in words (a skipped-images record is not a Python dict)."""
    if key == "skipped_images" and isinstance(value, dict):
        if not value.get("count"):
            return [key, "none"]
        reasons = ", ".join(f"{reason}: {count}" for reason, count in (value.get("reasons") or {}).items())
        first = ", ".join(value.get("first") or [])
        return [key, f"{value['count']} ({reasons}); first: {first}" if first else f"{value['count']} ({reasons})"]
    if key == "synthetic":
        return [key, "yes: drawn by mamsf synth, not chest X-rays" if value else "no"]
    return [key, str(value)]


SYNTHETIC_WARNING = ("SYNTHETIC DATA: these images were drawn by `mamsf synth` (findings painted in); the figures "
                     "test the software, and say nothing about real chest X-rays.")


def evaluation_blocks(metrics, images):
    source = metrics["source"]
    facts = [("images", metrics["n_images"]), ("patients", metrics["n_patients"] if metrics["n_patients"] is not None
                                               else "unknown (no patient ids)")]
    facts += [(key, value) for key, value in source.items()]
    facts += [("resampling", metrics["resampling"]), ("n_boot", metrics["n_boot"]), ("seed", metrics["seed"])]
    synthetic = bool(source.get("synthetic"))
    blocks = [("h1", "Evaluation on synthetic data" if synthetic else "Evaluation")]
    if synthetic:
        blocks.append(("p", SYNTHETIC_WARNING))
    blocks += [("table", None, [_fact(key, value) for key, value in facts]), ("p", resampling_sentence(metrics))]
    macro, micro = metrics["macro"], metrics["micro"]
    blocks.append(("p", f"Macro AUC over {macro['classes']} scorable classes: "
                        f"{value_text(macro['auc'], macro['auc_ci'])}; "
                        f"macro AP {value_text(macro['ap'], macro['ap_ci'])}. "
                        f"Micro AUC {value_text(micro['auc'], micro['auc_ci'])}; "
                        f"micro AP {value_text(micro['ap'], micro['ap_ci'])}."))
    if macro["not_scorable"]:
        blocks.append(("p", f"Not scorable (no positive or no negative in this set), left out of the macro means: "
                            f"{', '.join(macro['not_scorable'])}."))
    rows = [[label, str(e["positives"]), str(e["negatives"]), value_text(e["auc"], e["auc_ci"], note=e.get("interval")),
             value_text(e["ap"], e["ap_ci"], note=e.get("interval")), "n/a" if e["ece"] is None else f"{e['ece']:.3f}"]
            for label, e in metrics["per_class"].items()]
    header = ["class", "positives", "negatives", "AUC [95% CI]", "AP [95% CI]", "ECE"]
    blocks += [("h2", "Per class"), ("table", header, rows)]
    if "vs_baseline" in metrics:
        blocks += _baseline_blocks(metrics["vs_baseline"])
    blocks += _threshold_blocks(metrics["thresholds"])
    calibration = metrics["calibration"]
    blocks.append(("h2", "Calibration"))
    blocks.append(("p", "Expected calibration error over 10 equal-width bins (per class in the table above); pooled: "
                        + ("n/a (the scores are not probabilities)" if calibration["micro_ece"] is None
                           else f"{calibration['micro_ece']:.4f}") + "."))
    blocks.append(("h2", "Figures"))
    blocks += [("img", name, EVALUATION_PLOTS[name], images[name]) for name in EVALUATION_PLOTS]
    return blocks


def _baseline_blocks(comparison):
    """The AUC change against a baseline on the same images (an int8 file against its Keras model)."""
    macro = comparison["macro"]
    rows = [[label, value_text(e["auc_b"], None), value_text(e["auc_a"], None),
             value_text(e["delta_auc"], e["ci"], 4, note=e.get("interval")), _p(e["p_value"]), _p(e["p_holm"])]
            for label, e in comparison["per_class"].items() if e["scorable"]]
    return [("h2", "AUC change against the baseline (this model minus baseline)"),
            ("p", f"Baseline: {comparison['b']}. Macro AUC change over {macro['classes']} classes: "
                  f"{value_text(macro['delta_auc'], macro['ci'], 4)}, p = {macro['p_value']:.4g} (paired bootstrap). "
                  "Per class: paired bootstrap 95% CI, DeLong p-value, Holm-adjusted."),
            ("table", ["class", "AUC baseline", "AUC", "AUC change [95% CI]", "p (DeLong)", "p (Holm)"], rows)]


def _threshold_blocks(report):
    blocks = [("h2", "Operating thresholds")]
    if not report:
        return blocks + [("p", "Not chosen: pass --thresholds-from (a validation split or its predictions file). "
                               "Thresholds are never chosen on the set they are reported on.")]
    blocks.append(("p", f"Chosen on {report['chosen_on']['source']} ({report['chosen_on']['n_images']} images); "
                        f"thresholds.json holds the {report['rule']!r} rule's values (S = "
                        f"{report['min_sensitivity']:g}; the 'guaranteed' rule's lower bound of sensitivity holds "
                        f"with probability {1 - report.get('delta', 0.05):g}). Figures below are on this set."))
    if report.get("not_screened"):
        blocks.append(("p", "Not screened (no guaranteed threshold; the device shows these classes as not screened, "
                            "never as negative): " + "; ".join(f"{label} ({reason.split(': ', 1)[1]})" for label, reason
                                                               in report["not_screened"].items()) + "."))
    elif report["not_chosen"]:
        blocks.append(("p", f"No threshold could be chosen for {', '.join(report['not_chosen'])} (no positive or no "
                            "negative in the validation set): thresholds.json gives them none."))
    rows = []
    for label, rules in report["per_class"].items():
        by_threshold = {}  # rules that chose the same threshold share one row
        for rule, entry in rules.items():
            by_threshold.setdefault(round(entry["threshold"], 6), (entry, []))[1].append(rule)
        for entry, names in by_threshold.values():
            figures = [value_text(entry[m]["value"], entry[m]["ci"])
                       for m in ("sensitivity", "specificity", "ppv", "npv")]
            rows.append([label, " = ".join(names), f"{entry['threshold']:.4f}"] + figures)
    return blocks + [("p", "One row per class and threshold; rules that chose the same threshold share it."),
                     ("table", ["class", "rule", "threshold", "sensitivity", "specificity", "PPV", "NPV"], rows)]


def short_name(source):
    """What to call a compared model: its run folder's name for a run's `predictions.npz`, else the file's
    name without `.npz` (`runs/branch/predictions.npz` -> "branch")."""
    path = str(source).split(" on ")[0].rstrip("/\\")
    folder, name = os.path.split(path)
    if name in ("predictions.npz", "best.keras", "final.keras") and os.path.basename(folder):
        return os.path.basename(folder)
    return name[:-4] if name.endswith(".npz") else name or str(source)


def comparison_blocks(comparison, images, note=None):
    macro = comparison["macro"]
    name_a, name_b = comparison_names(comparison)
    blocks = [("h1", f"Paired comparison: {name_a} minus {name_b}")]
    if note:
        blocks.append(("p", note))
    blocks += [("table", None, [[name_a, comparison["a"]], [name_b, comparison["b"]],
                                ["images", str(comparison["n_images"])], ["patients", str(comparison["n_patients"])],
                                ["resampling", comparison["resampling"]], ["n_boot", str(comparison["n_boot"])],
                                ["seed", str(comparison["seed"])]]),
               ("p", resampling_sentence(comparison) + " p-values: DeLong's test per class (two-sided), "
                     "Holm-adjusted over the scorable classes; the macro p-value from the paired bootstrap."),
               ("p", f"Macro delta AUC ({name_a} minus {name_b}) over {macro['classes']} classes: "
                     f"{value_text(macro['delta_auc'], macro['ci'], 4)}, p = {macro['p_value']:.4g}.")]
    rows = [[label, str(e.get("positives", "")), value_text(e["auc_a"], None), value_text(e["auc_b"], None),
             value_text(e["delta_auc"], e["ci"], 4, note=e.get("interval")), _p(e["p_value"]), _p(e["p_holm"])]
            for label, e in comparison["per_class"].items()]
    header = ["class", "positives", f"AUC {name_a}", f"AUC {name_b}", "delta AUC [95% CI]", "p (DeLong)", "p (Holm)"]
    blocks += [("table", header, rows),
               ("img", "delta_forest.png", f"Per-class delta AUC, {name_a} minus {name_b}", images["delta_forest.png"])]
    return blocks


def comparison_names(comparison):
    """Two distinct short names for the compared models ("A"/"B" only when their names are the same)."""
    name_a, name_b = short_name(comparison["a"]), short_name(comparison["b"])
    return (name_a, name_b) if name_a != name_b else ("A", "B")


def comparison_lines(comparison, name_a=None, name_b=None):
    """The per-class table of a comparison for the terminal (`mamsf compare`, `mamsf demo`); the models'
    names default to `comparison_names`."""
    if name_a is None or name_b is None:
        name_a, name_b = comparison_names(comparison)
    difference = f"{name_a} - {name_b} [95% CI]"
    lines = [f"  {'class':<20} {'pos':>5} {'AUC ' + name_a:>12} {'AUC ' + name_b:>12}  {difference:<30} "
             f"{'p (DeLong)':>10} {'p (Holm)':>9}"]
    for label, entry in comparison["per_class"].items():
        positives = entry.get("positives", "")
        if not entry["scorable"]:
            lines.append(f"  {label:<20} {positives:>5} not scorable (no positive or no negative)")
            continue
        if entry.get("interval"):  # too few positives: the point figures, no interval and no test
            lines.append(f"  {label:<20} {positives:>5} {entry['auc_a']:>12.4f} {entry['auc_b']:>12.4f}  "
                         f"{entry['delta_auc']:+.4f}: {entry['interval']}, no p-value")
            continue
        lines.append(f"  {label:<20} {positives:>5} {entry['auc_a']:>12.4f} {entry['auc_b']:>12.4f}  "
                     f"{value_text(entry['delta_auc'], entry['ci'], 4):<30} {entry['p_value']:>10.4g} "
                     f"{entry['p_holm']:>9.4g}")
    macro = comparison["macro"]
    lines.append(f"macro {name_a} - {name_b} over {macro['classes']} classes: "
                 f"{value_text(macro['delta_auc'], macro['ci'], 4)}, p = {macro['p_value']:.4g} (paired "
                 f"{comparison['resampling']} bootstrap)")
    return lines


def _p(value):
    return p_text(value)


def to_markdown(blocks):
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1] or ["", ""], block[2]  # Markdown needs a header row; HTML goes without
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def to_html(blocks, title):
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse;"
             "font-size:90%;}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;}img{max-width:100%;}</style>",
             "</head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "table":
            heads = "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1] or [])
            header = f"<tr>{heads}</tr>" if heads else ""
            cells = ("".join(f"<td>{html.escape(cell)}</td>" for cell in row) for row in block[2])
            rows = "".join(f"<tr>{row}</tr>" for row in cells)
            parts.append(f"<table>{header}{rows}</table>")
        elif kind == "img":
            data = base64.b64encode(block[3]).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
