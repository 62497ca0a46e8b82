"""Issue 26's report frictions: a synthetic run says so, a comparison names its models and shows the
positives, the facts table has no empty header row and no Python dict, the threshold table has one row
per class and threshold, the ablation drift plot has a legend."""

import numpy as np

from keras_mamsf.evaluation import Predictions, compare_predictions, evaluate_predictions
from keras_mamsf.evaluation.report import write_comparison, write_evaluation
from keras_mamsf.evaluation.scoring import split_source

LABELS = ["Effusion", "Hernia"]


def predictions(seed, shift=1.0, source="runs/x/predictions.npz"):
    rng = np.random.default_rng(seed)
    y = (rng.random((120, 2)) < [0.3, 0.1]).astype("float64")
    score = np.clip(0.3 + 0.3 * y * shift + rng.normal(0, 0.2, y.shape), 0, 1)
    patients = np.repeat(np.arange(60), 2).astype(str)
    return Predictions(y, score, labels=LABELS, patient_id=patients, source=source)


def test_an_evaluation_of_synthetic_data_says_so_in_words(tmp_path):
    root = tmp_path / "synth"
    root.mkdir()
    (root / "SYNTHETIC.txt").write_text("SYNTHETIC\n")
    source = split_source(str(tmp_path / "m.keras"), str(root), "test", "official", 0.1, 0)
    assert source["synthetic"] is True
    source["skipped_images"] = {"count": 2, "reasons": {"missing": 1, "truncated": 1}, "first": ["a.png", "b.png"]}
    test, val = predictions(0), predictions(1)
    metrics = evaluate_predictions(test, n_boot=50, validation=val, source=source)
    paths = write_evaluation(tmp_path / "eval", test, metrics)
    html = open(paths["report.html"]).read()
    markdown = open(paths["report.md"]).read()
    for text in (html, markdown):
        assert "SYNTHETIC DATA" in text and "say nothing about real chest X-rays" in text
        assert "skipped_images" in text and "2 (missing: 1, truncated: 1); first: a.png, b.png" in text
        assert "{'count'" not in text and "{&#x27;count" not in text
    assert "<table><tr><th></th><th></th></tr>" not in html  # no empty header row
    rows = [line for line in markdown.splitlines() if line.startswith("| Effusion |") and "[" in line]
    thresholds = [row.split(" | ")[2] for row in rows if row.count("|") == 8]
    assert len(thresholds) == len(set(thresholds)) >= 1  # one row per distinct threshold of a class
    assert len(rows) <= 4  # the AUC row and four rules, two of which chose the same threshold


def test_a_comparison_names_the_models_and_shows_positives(tmp_path):
    a = predictions(0, 1.5, "runs/branch/predictions.npz")
    b = predictions(0, 1.0, "runs/none/predictions.npz")
    comparison = compare_predictions(a, b, n_boot=50)
    assert comparison["per_class"]["Hernia"]["positives"] == int(a.y_true[:, 1].sum())
    paths = write_comparison(tmp_path / "cmp", comparison, note="SYNTHETIC DATA: a note")
    html = open(paths["compare.html"]).read()
    assert "Paired comparison: branch minus none" in html and "SYNTHETIC DATA: a note" in html
    assert "<th>positives</th><th>AUC branch</th><th>AUC none</th>" in html
    assert "AUC A" not in html


def test_the_ablation_drift_plot_has_a_legend_for_every_cell():
    from keras_mamsf.evaluation import plots

    panels = {"online block": {"none": [(0, 0.0), (1, 0.2)], "branch": [(0, 0.0), (1, 0.1)]},
              "anchor block": {"branch": [(0, 0.0), (1, 0.05)]}}
    captured = {}
    original = plots._png

    def spy(figure):
        captured["legends"] = [[text.get_text() for text in legend.get_texts()] for legend in figure.legends]
        captured["colours"] = {line.get_label(): line.get_color() for axis in figure.axes for line in axis.lines}
        return original(figure)

    plots._png = spy
    try:
        plots.line_panels(panels, "drift", "epoch", "drift")
    finally:
        plots._png = original
    assert captured["legends"] == [["none", "branch"]]
    branch = {axis_line for axis_line in captured["colours"] if axis_line == "branch"}
    assert branch and captured["colours"]["branch"] != captured["colours"]["none"]
