"""The mixed int8 search (`litert.mixed_int8`): the ops ranked by how far the outputs move with each alone in int8, the
n worst kept in float for n = 1, 2, 4, ... until the exporter's criterion accepts, then bisected to the smallest
accepted n."""

import numpy as np
import pytest

from keras_mamsf.export import litert

SIZE = 16


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for stage, filters in enumerate((8, 8, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="swish", name=f"stage{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda image: {"logits": model(image)},
                         input_signature=[tf.TensorSpec((1, SIZE, SIZE, 1), tf.float32, name="image")])
    path = str(tmp_path_factory.mktemp("mixed") / "saved")
    archive.write_out(path, verbose=False)
    images = np.random.default_rng(0).uniform(0, 255, (24, 1, SIZE, SIZE, 1)).astype("float32")
    return path, images


def test_noise_to_signal_is_the_relative_rms_error():
    reference = np.array([0.0, 1.0, 2.0, 3.0])
    quantized = np.array([0, 10, 20, 31], "int8")  # scale 0.1: errors 0, 0, 0, 0.1
    expected = np.sqrt(0.01 / 4) / reference.std()
    assert abs(litert.noise_to_signal(reference, quantized, 0.1, 0) - expected) < 1e-12
    assert litert.noise_to_signal(np.ones(4), np.ones(4, "int8"), 1.0, 0) == 0.0  # a constant tensor


def test_an_op_without_finite_float_values_is_unmeasured_and_ranked_last():
    """The debugger's float pass can give NaN (it did for a swish block of the demo's B0): no figure, no warning, and
    the op is ranked after every measured one and named, not silently taken for harmless."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" was printed here
        figure = litert.noise_to_signal(np.full(4, np.nan, "float32"), np.zeros(4, "int8"), 1.0, 0)
    assert np.isnan(figure)
    ranked, unmeasured = litert.rank_ops({"a": 0.2, "b": figure, "c": 0.9, "d": 0.0, "e": 0.2})
    assert ranked == ["c", "a", "e", "d", "b"] and unmeasured == ["b"]  # ties keep the graph's order


def test_the_search_doubles_then_bisects(saved_model):
    path, images = saved_model
    answers = iter([False, False, False, True, True, False])  # 1, 2, 4 fail; 8 passes; 6 passes; 5 fails
    data, record = litert.mixed_int8(path, images, lambda model: next(answers), debug_images=4)
    assert [trial["float_ops"] for trial in record["trials"]] == [1, 2, 4, 8, 6, 5]
    assert record["passed"] and len(record["float_ops"]) == 6 and record["ops_ranked"] >= 8
    errors = [op["output_error"] for op in record["ranking"]]
    assert errors == sorted(errors, reverse=True) and record["float_ops"][0] == record["ranking"][0]["tensor"]
    assert all(op["noise_to_signal"] is None or op["noise_to_signal"] >= 0 for op in record["ranking"])
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner("serve")
    assert runner(image=images[0])["logits"].shape == (1, 3)


def test_an_ops_figure_is_the_output_error_with_it_alone_in_int8(saved_model):
    """Against an independent computation: the Keras SavedModel's logits, and the model with one op in int8 run by
    the interpreter; RMS change per logit over its SD across the images, averaged over the logits."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    path, images = saved_model
    debugger, rows, _ = litert._debugger(path, images, 4)
    names = list(dict.fromkeys(row["tensor_name"] for row in rows))
    figures = litert.output_error_alone(debugger, names, litert.convert(path, "float32"), list(images[:8]))
    assert set(figures) == set(names) and all(figure >= 0 for figure in figures.values())
    reference = keras.layers.TFSMLayer(path, call_endpoint="serve")
    expected = np.concatenate([np.asarray(reference(image)["logits"]) for image in images[:8]])
    worst = max(figures, key=figures.get)
    runner = Interpreter(model_content=litert._with_float_ops(debugger, [n for n in names if n != worst]))
    alone = np.concatenate([runner.get_signature_runner("serve")(image=image)["logits"] for image in images[:8]])
    by_hand = np.mean(np.sqrt(((alone - expected) ** 2).mean(0)) / expected.std(0))
    assert figures[worst] > 0 and abs(figures[worst] - by_hand) <= 1e-3 * by_hand + 1e-6


def test_a_search_that_never_passes_says_so_within_its_trials(saved_model):
    path, images = saved_model
    data, record = litert.mixed_int8(path, images, lambda model: False, debug_images=4, max_trials=3)
    assert not record["passed"] and [t["float_ops"] for t in record["trials"]] == [1, 2, 4]
    assert len(record["float_ops"]) == 4  # the largest tried


def test_int8_by_part_quantizes_one_part_at_a_time(saved_model):
    """"all" is full int8; "weights only" keeps every op with a part in float (the float model here, whose weights are
    not on the int8 grid); each part's model has int8 tensors between the two; an op without a part stays int8."""
    import re

    import keras
    from ai_edge_litert.interpreter import Interpreter

    path, images = saved_model

    def part_of(name):
        found = re.search(r"stage\d", name)
        return found.group(0) if found else "head"

    models = list(litert.int8_by_part(path, images, part_of, debug_images=4))
    names = [name for name, _, _ in models]
    assert names == ["all", "weights only", "stage0", "stage1", "stage2", "stage3", "head"]
    counts = dict((name, ops) for name, ops, _ in models)
    assert counts["weights only"] == 0 and counts["all"] == sum(counts[name] for name in names[2:])
    reference = keras.layers.TFSMLayer(path, call_endpoint="serve")

    def run(data):
        interpreter = Interpreter(model_content=data)
        runner = interpreter.get_signature_runner("serve")
        int8 = sum(detail["dtype"] == np.int8 for detail in interpreter.get_tensor_details())
        return np.concatenate([runner(image=image)["logits"] for image in images]), int8

    expected = np.concatenate([np.asarray(reference(image)["logits"]) for image in images])
    outputs = {name: run(data) for name, _, data in models}
    error = {name: np.abs(out - expected).max() for name, (out, _) in outputs.items()}
    assert error["weights only"] < 1e-5 < error["all"]
    for name in names[2:]:
        assert outputs["weights only"][1] < outputs[name][1] < outputs["all"][1]

    def pooled_apart(name):
        return None if "pooling" in name else part_of(name)

    kept = {name: ops for name, ops, _ in litert.int8_by_part(path, images, pooled_apart, debug_images=4)}
    assert kept["weights only"] == 1 and kept["all"] == counts["all"]  # the pooling's Mean, int8 in every model


def _job(reference, labels, thresholds, rule=None, limit=0.02):
    import types

    held_out = {"reference_scores": reference, "labels": labels, "images": np.zeros((len(labels), 1)),
                "source": "synthetic", "real": True, "patient_id": np.arange(len(labels))}
    messages = []
    job = types.SimpleNamespace(held_out=held_out, labels=["a", "b"], thresholds=thresholds, rule=rule,
                                mixed_max_flipped=limit, log=messages.append, work=None)
    return job, messages


def test_a_mixed_candidate_must_also_keep_the_float_models_calls(monkeypatch, tmp_path):
    """The mixed search's criterion (`exporter._passes`): the gate, then at most `mixed_max_flipped` of the calls
    flipped per screened class on average, at the thresholds the file would be deployed with; class "b" is screened
    by neither model and does not count."""
    from keras_mamsf.export import exporter

    rng = np.random.default_rng(1)
    reference = rng.random((400, 2))
    labels = (rng.random((400, 2)) < 0.3).astype(int)
    candidate = reference.copy()
    candidate[:12, 0] = 1 - reference[:12, 0]  # moves some calls at 0.5 across it
    thresholds = {"a": 0.5, "b": None}
    flipped = np.mean((reference[:, 0] >= 0.5) != (candidate[:, 0] >= 0.5))
    assert 0.005 < flipped <= 0.03
    job, messages = _job(reference, labels, thresholds, limit=flipped - 1e-9)
    job.work = str(tmp_path)
    verdicts = iter([{"status": "failed"}, {"status": "passed"}, {"status": "passed"}])
    monkeypatch.setattr(exporter, "_verify", lambda path, gate, variant, job: (next(verdicts), candidate))
    assert not exporter._passes(b"", "model_int8_mixed.tflite", job)  # the gate first
    assert not exporter._passes(b"", "model_int8_mixed.tflite", job)
    assert messages == [f"model_int8_mixed.tflite: the candidate passes the gate, but its calls flip on {flipped:.2%} "
                        f"of the val images per screened class (at most {flipped - 1e-9:.2%})"]
    job.mixed_max_flipped = flipped
    assert exporter._passes(b"", "model_int8_mixed.tflite", job)


def test_the_flips_are_counted_at_the_files_own_thresholds_under_a_rule():
    """With a threshold rule the candidate is judged at the thresholds it would get (`_own_thresholds`: the rule on
    its own scores, the float model's kept where met), not at the float model's."""
    from keras_mamsf.export import exporter
    from keras_mamsf.stats.thresholds import keep_reference_where_met, threshold_record

    rng = np.random.default_rng(2)
    labels = np.zeros((600, 2), int)
    labels[:90] = 1
    reference = 1 / (1 + np.exp(-(rng.normal(size=(600, 2)) + 2 * labels)))
    candidate = 1 / (1 + np.exp(-(np.log(reference / (1 - reference)) + rng.normal(0, 0.3, reference.shape))))
    floats = threshold_record(labels, reference, ["a", "b"], "guaranteed")["thresholds"]
    rule = {"rule": "guaranteed", "min_sensitivity": 0.9, "delta": 0.05}
    job, _ = _job(reference, labels, floats, rule=rule)
    own = keep_reference_where_met(threshold_record(labels, candidate, ["a", "b"], "guaranteed"), labels, candidate,
                                   ["a", "b"], floats)["thresholds"]
    expected = np.mean([np.mean((reference[:, c] >= floats[k]) != (candidate[:, c] >= own[k]))
                        for c, k in enumerate("ab")])
    assert exporter._mean_flipped("model_int8_mixed.tflite", candidate, job) == pytest.approx(expected)
    job.rule = None  # no rule: the float model's thresholds
    at_floats = np.mean([np.mean((reference[:, c] >= floats[k]) != (candidate[:, c] >= floats[k]))
                         for c, k in enumerate("ab")])
    assert exporter._mean_flipped("model_int8_mixed.tflite", candidate, job) == pytest.approx(at_floats)
