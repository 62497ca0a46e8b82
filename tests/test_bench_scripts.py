"""The bench scripts run on lent GPU machines that no test reaches, so a broken import there costs
device time that cannot be had back (the probe once imported a helper that a refactor had removed).
Each script is imported here in a child process, as `python bench/X.py` would import it."""

import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_every_bench_script_imports():
    scripts = sorted(path.stem for path in BENCH.glob("*.py"))
    assert "nonfinite_probe" in scripts and "train_throughput" in scripts
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r})\n"
            + "".join(f"import {name}\n" for name in scripts))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_int8_error_parts_follow_the_layer_names():
    """`bench/int8_error.py` measures the network a part at a time; the parts come from TFLite's op names (the Keras
    layer names of the exported graph, as in run A's int8 file)."""
    sys.path.insert(0, str(BENCH))
    try:
        from int8_error import part_of
    finally:
        sys.path.remove(str(BENCH))
    prefix = "mamsf_efficientnet_lite0_branch_inference_1/"
    named = {
        "trunk_1/stem_activation_1/Relu6": "stem",
        "trunk_1/block1a_project_bn_1/batchnorm/add_1;x/block1a_project_conv_1/convolution": "stage 1",
        "trunk_1/block6d_add_1/Add": "stage 6",
        "momentum_anchor_1/final_block_1/block7a_expand_activation_1/Relu6": "head",
        "momentum_anchor_1/final_block_3/top_activation_1/Relu6": "head",
        "fusion_1/branch_3x3_1/branch_3x3_act_1/Relu6": "head",
        "ood_score_1/MatMul_11": None,
    }
    assert {name: part_of(prefix + name) for name in named} == named
    # the ops writing the outputs (run A's int8 file: logits :0, ood_score :1 from the guard's MAXIMUM, probs :2)
    outputs = {"StatefulPartitionedCall:01": "head", "StatefulPartitionedCall:21": "head",
               "StatefulPartitionedCall:11": None, "StatefulPartitionedCall:1": None}
    assert {name: part_of(name) for name in outputs} == outputs
