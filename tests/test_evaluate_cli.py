"""`mamsf evaluate --predictions` and `mamsf compare`: every output file, report contents, and a
one-line error with exit code 1 for each kind of bad input."""

import json

import numpy as np
import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.evaluation import Predictions, evaluate_predictions

LABELS = ["Effusion", "Nodule", "Hernia"]


def _predictions(seed=0, n=240, shift=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.3, 0.2, 0.0]).astype(int)  # Hernia: no positives, not scorable
    score = 1 / (1 + np.exp(-(rng.normal(size=(n, 3)) + shift * y - 1)))
    return Predictions(y, score, labels=LABELS, patient_id=np.arange(n) // 3,
                       image_index=np.array([f"{i:08d}_000.png" for i in range(n)]))


def _error(capsys, argv, command="evaluate"):
    assert main(argv) == 1, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mamsf {command}: error: ") and "\n" not in err, err
    return err


def test_evaluate_predictions_writes_every_file(tmp_path, capsys):
    test, val = _predictions(0), _predictions(1)
    test.save(tmp_path / "test.npz")
    val.save(tmp_path / "val.npz")
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(tmp_path / "test.npz"),
                 "--thresholds-from", str(tmp_path / "val.npz"), "--n-boot", "300", "--seed", "3",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed == metrics
    assert metrics == json.loads(json.dumps(evaluate_predictions(test, n_boot=300, seed=3, validation=Predictions.load(
        tmp_path / "val.npz"), source={"predictions": str(tmp_path / "test.npz")})))
    assert {"per_class", "macro", "micro", "thresholds", "n_images", "n_patients", "resampling", "n_boot", "seed",
            "source"} <= set(metrics)
    expected = {"auc", "auc_ci", "ap", "ap_ci", "positives", "negatives", "scorable"}
    assert set(metrics["per_class"]["Effusion"]) >= expected
    assert (metrics["n_images"], metrics["n_patients"], metrics["resampling"]) == (240, 80, "patient")
    assert metrics["macro"]["not_scorable"] == ["Hernia"] and metrics["macro"]["classes"] == 2
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert list(thresholds["thresholds"]) == LABELS and thresholds["thresholds"] == metrics["thresholds"]["values"]
    from keras_mamsf.evaluation.evaluate import thresholds_file

    assert thresholds["rule"] == "guaranteed" and thresholds == thresholds_file(metrics["thresholds"])
    assert Predictions.load(out / "predictions.npz").image_index.tolist() == test.image_index.tolist()
    from PIL import Image

    for name in ("roc_curves.png", "pr_curves.png", "reliability.png", "auc_forest.png"):
        with Image.open(out / name) as image:
            image.load()  # decodes
            assert image.size[0] > 100
    markdown = (out / "report.md").read_text()
    assert "resamples of patients" in markdown and "seed 3" in markdown and "Hernia" in markdown
    assert "left out of the macro means: Hernia" in markdown
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "src='roc_curves.png'" not in html
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_evaluate_names_split_and_image_resampling(tmp_path, capsys):
    rng = np.random.default_rng(2)
    y = (rng.random((50, 2)) < 0.4).astype(int)
    np.savez(tmp_path / "p.npz", y_true=y, y_score=rng.random((50, 2)))  # another tool's file: no ids, no labels
    assert main(["evaluate", "--predictions", str(tmp_path / "p.npz"), "--n-boot", "100", "--out",
                 str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "resamples of images" in out and "50 images, unknown patients" in out
    markdown = (tmp_path / "o" / "report.md").read_text()
    assert "resamples of images (no patient ids" in markdown and "Not chosen" in markdown


def test_compare_command(tmp_path, capsys):
    a, b = _predictions(0, shift=2.0), _predictions(0, shift=1.0)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--n-boot", "300", "--json",
                 "--out", str(tmp_path / "cmp")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(result) >= {"per_class", "macro", "n_images", "n_patients"}
    assert set(result["per_class"]["Effusion"]) >= {"delta_auc", "ci", "p_value", "p_holm"}
    assert result["per_class"]["Effusion"]["delta_auc"] > 0 and result["per_class"]["Hernia"]["delta_auc"] is None
    assert result["macro"]["delta_auc"] > 0 and (tmp_path / "cmp" / "delta_forest.png").stat().st_size > 1000
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--n-boot", "100"]) == 0
    text = capsys.readouterr().out
    assert "better" not in text.lower() and "p (Holm)" in text and "Hernia" in text


def test_compare_refuses_different_images_or_labels(tmp_path, capsys):
    a = _predictions(0)
    a.save(tmp_path / "a.npz")
    other = _predictions(0)
    other.image_index[5] = "99999999_000.png"
    other.save(tmp_path / "names.npz")
    err = _error(capsys, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "names.npz")], "compare")
    assert "image 5 is '99999999_000.png'" in err
    Predictions(a.y_true, a.y_score, labels=["Effusion", "Mass", "Hernia"], image_index=a.image_index).save(
        tmp_path / "labels.npz")
    err = _error(capsys, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "labels.npz")], "compare")
    assert "labels differ" in err and "column 1 ('Nodule' vs 'Mass')" in err
    Predictions(a.y_true[:10], a.y_score[:10], labels=LABELS).save(tmp_path / "short.npz")
    assert "10 images" in _error(capsys, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "short.npz")], "compare")


@pytest.mark.parametrize("case, expected", [
    ("no_y_true", "no y_true array"),
    ("shapes", "must have the same shape"),
    ("nan", "NaN, infinite"),
    ("inf", "NaN, infinite"),
    ("labels", "only 0 and 1"),
])
def test_bad_predictions_files(tmp_path, capsys, case, expected):
    rng = np.random.default_rng(0)
    y, score = (rng.random((20, 3)) < 0.5).astype(int), rng.random((20, 3))
    arrays = {"y_true": y, "y_score": score}
    if case == "no_y_true":
        del arrays["y_true"]
    elif case == "shapes":
        arrays["y_score"] = score[:, :2]
    elif case == "nan":
        score[3, 1] = np.nan
    elif case == "inf":
        score[0, 0] = np.inf
    elif case == "labels":
        y[2, 2] = 2
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    err = _error(capsys, ["evaluate", "--predictions", str(path), "--out", str(tmp_path / "o")])
    assert str(path) in err and expected in err


def test_bad_command_lines(tmp_path, capsys):
    _predictions().save(tmp_path / "p.npz")
    p = str(tmp_path / "p.npz")
    out = str(tmp_path / "o")
    assert "no validation split" in _error(capsys, ["evaluate", "--predictions", p, "--thresholds-from", "val",
                                                    "--out", out])
    assert "unknown --split 'dev'" in _error(capsys, ["evaluate", "--model", "m.keras", "--data", str(tmp_path),
                                                       "--split", "dev", "--out", out])
    assert "--model needs --data" in _error(capsys, ["evaluate", "--model", "m.keras", "--out", out])
    assert "no such predictions file" in _error(capsys, ["evaluate", "--predictions", str(tmp_path / "none.npz"),
                                                         "--out", out])
    (tmp_path / "text.npz").write_text("not an npz")
    assert "not a predictions file" in _error(capsys, ["evaluate", "--predictions", str(tmp_path / "text.npz"),
                                                   "--out", out])
    assert not (tmp_path / "o").exists()  # nothing written on bad input
