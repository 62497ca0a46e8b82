"""The report's figures, as PNG bytes (matplotlib, Agg backend: no display needed)."""

import io
import math

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(figure):
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _grid(count):
    columns = min(4, max(1, count))
    rows = math.ceil(count / columns)
    plt = _pyplot()
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, axes.flat


def curve_grid(predictions, metrics, kind):
    """ROC (`kind="roc"`) or precision-recall (`"pr"`) curves, one panel per scorable class."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    labels = [label for label in predictions.labels if metrics["per_class"][label]["scorable"]]
    figure, axes = _grid(max(1, len(labels)))
    for axis, label in zip(axes, labels):
        c = predictions.labels.index(label)
        y, score = predictions.y_true[:, c], predictions.y_score[:, c]
        entry = metrics["per_class"][label]
        if kind == "roc":
            fpr, tpr, _ = roc_curve(y, score)
            axis.plot(fpr, tpr, lw=1.2)
            axis.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
            axis.set_xlabel("1 - specificity")
            axis.set_ylabel("sensitivity")
            axis.set_title(f"{label}\nAUC {value_text(entry['auc'], entry['auc_ci'])}", fontsize=8)
        else:
            precision, recall, _ = precision_recall_curve(y, score)
            axis.step(recall, precision, where="post", lw=1.2)
            axis.axhline(y.mean(), color="grey", lw=0.6, ls="--")
            axis.set_xlabel("recall")
            axis.set_ylabel("precision")
            axis.set_title(f"{label}\nAP {value_text(entry['ap'], entry['ap_ci'])}", fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return _png(figure)


def reliability_diagram(predictions, metrics):
    """Observed frequency against mean predicted probability, all classes pooled, with counts."""
    from keras_mamsf.stats.calibration import reliability_bins

    plt = _pyplot()
    table = reliability_bins(predictions.y_true, predictions.y_score)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    filled = table["count"] > 0
    top.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--", label="perfect calibration")
    top.plot(table["mean_score"][filled], table["observed"][filled], marker="o", lw=1.2, label="model")
    top.set_ylabel("observed frequency")
    ece = metrics["calibration"]["micro_ece"]
    top.set_title("Reliability, all classes pooled" + ("" if ece is None else f" (ECE {ece:.3f})"), fontsize=9)
    top.legend(fontsize=7)
    centres = (table["edges"][:-1] + table["edges"][1:]) / 2
    bottom.bar(centres, table["count"], width=0.09)
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("count")
    figure.tight_layout()
    return _png(figure)


def forest(rows, title, xlabel, reference=None):
    """A forest plot: rows of `(name, value, [lo, hi])`; rows without a value are skipped."""
    plt = _pyplot()
    rows = [row for row in rows if row[1] is not None]
    figure, axis = plt.subplots(figsize=(6, 0.35 * max(3, len(rows)) + 1))
    for i, (name, value, ci) in enumerate(reversed(rows)):
        if ci is not None:
            axis.plot(ci, [i, i], color="C0", lw=1.5)
        axis.plot([value], [i], marker="s", color="C0")
    axis.set_yticks(range(len(rows)))
    axis.set_yticklabels([row[0] for row in reversed(rows)], fontsize=8)
    if reference is not None:
        axis.axvline(reference, color="grey", lw=0.8, ls="--")
    axis.set_xlabel(xlabel)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)


def auc_forest(metrics):
    rows = [(label, entry["auc"], entry["auc_ci"]) for label, entry in metrics["per_class"].items()]
    rows.append(("macro", metrics["macro"]["auc"], metrics["macro"]["auc_ci"]))
    return forest(rows, f"ROC AUC with {int(metrics['confidence'] * 100)}% CI ({metrics['resampling']} bootstrap)",
                  "AUC", reference=0.5)


def delta_forest(comparison):
    rows = [(label, entry["delta_auc"], entry["ci"]) for label, entry in comparison["per_class"].items()]
    rows.append(("macro", comparison["macro"]["delta_auc"], comparison["macro"]["ci"]))
    return forest(rows, f"AUC(A) - AUC(B) with {int(comparison['confidence'] * 100)}% CI "
                        f"(paired {comparison['resampling']} bootstrap)", "delta AUC", reference=0.0)


def line_panels(panels, title, xlabel, ylabel):
    """Small multiples: `panels = {panel title: {series name: [(x, y), ...]}}`, one line per series
    (a series name containing "anchor" is dashed); y None is a gap. A series keeps its colour in every
    panel, and one legend below the panels names them all."""
    _pyplot()  # the non-interactive backend, before the first figure
    figure, axes = _grid(len(panels))
    names = list(dict.fromkeys(label for series in panels.values() for label in series))
    colours = {label: f"C{index % 10}" for index, label in enumerate(names)}
    handles = {}
    for axis, (name, series) in zip(axes, panels.items()):
        for label, points in series.items():
            xs = [x for x, _ in points]
            ys = [np.nan if y is None else y for _, y in points]
            (handles[label],) = axis.plot(xs, ys, marker="o", ms=3, lw=1.2, ls="--" if "anchor" in label else "-",
                                          label=label, color=colours[label])
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(xlabel, fontsize=8)
        axis.set_ylabel(ylabel, fontsize=8)
        axis.tick_params(labelsize=7)
    legend_rows = (len(names) - 1) // 4 + 1 if handles else 0
    if handles:
        figure.legend([handles[label] for label in names], names, loc="lower center", ncol=min(len(names), 4),
                      fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    inch = 1.0 / figure.get_figheight()  # room for the legend rows below the panels
    figure.tight_layout(rect=(0, min(0.4, 0.25 * inch * legend_rows + 0.1 * inch * bool(handles)), 1, 0.97))
    return _png(figure)


def drift_curves(summary):
    """A `drift.json` summary: per class (rarest first), drift from the start of both blocks."""
    panels = {}
    for name in summary["classes"]:
        blocks = ["online"] if summary.get("anchor_mode") is None else ["online", "anchor"]
        panels[f"{name} ({summary['train_positives'].get(name, 0)} train)"] = {
            block: [(0, 0.0)] + [(r["epoch"], r[block][name]["drift_start"]) for r in summary["epochs"]]
            for block in blocks
        }
    return line_panels(panels, "Feature drift from the start (cosine distance of class centroids), rarest first",
                       "epoch", "drift")


def sweep(points, baseline, title, xlabel, ylabel):
    """Mean +- sd against a swept setting: `points = [(x, mean, sd), ...]` (x on a log scale of 1 - x
    when all x are in (0, 1), as for decays); `baseline = (mean, sd)` or None, a horizontal band."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.4))
    points = sorted(p for p in points if p[1] is not None)
    decays = points and all(0 < x < 1 for x, _, _ in points)
    xs = [1 - x if decays else x for x, _, _ in points]
    axis.errorbar(xs, [m for _, m, _ in points], yerr=[s or 0.0 for _, _, s in points], marker="o", capsize=3,
                  label="anchored")
    if decays:
        axis.set_xscale("log")
        axis.invert_xaxis()
        axis.set_xticks(xs)
        axis.set_xticklabels([str(x) for x, _, _ in points])
    if baseline is not None and baseline[0] is not None:
        axis.axhline(baseline[0], color="grey", ls="--", lw=1, label="no anchor")
        if baseline[1]:
            axis.axhspan(baseline[0] - baseline[1], baseline[0] + baseline[1], color="grey", alpha=0.15)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def value_text(value, ci, digits=3, note=None):
    """`0.812 [0.790, 0.833]`, or `n/a`; shared by the plots' titles and the reports' tables. `note` (a class's
    "too few positives for an interval (1 < 10)") stands where the interval would."""
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    if note:
        return f"{text} ({note})"
    return text if ci is None else f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def p_text(value, digits=4):
    """A p-value, or "n/a" where no test was made (not scorable, or too few positives)."""
    return "n/a" if value is None else f"{value:.{digits}g}"
