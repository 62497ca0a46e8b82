import numpy as np
import pytest
from keras import ops

from keras_mamsf.anchor import anchor_decay


def timm_decay(step, decay, gamma=1.0, power=2 / 3):
    # timm ModelEmaV3.get_decay with use_warmup=True, update_after_step=0, called with
    # step = number of updates including this one (so t = step - 1 here).
    step = max(0, step - 1)
    if step <= 0:
        return 0.0
    return min(decay, 1 - (1 + step / gamma) ** -power)


@pytest.mark.parametrize("t", [0, 1, 2, 10, 100, 31622, 10**6])
def test_warmup_matches_timm(t):
    got = float(ops.convert_to_numpy(anchor_decay(t, 0.9999)))
    assert got == pytest.approx(timm_decay(t + 1, 0.9999), abs=1e-6)


def test_first_update_copies_and_power_reaches_documented_values():
    assert float(ops.convert_to_numpy(anchor_decay(0, 0.999))) == 0.0
    # timm's docstring: power 3/4 reaches 0.999 at 10k steps, 2/3 at ~31.6k.
    decay = float(ops.convert_to_numpy(anchor_decay(10_000, 0.9999, warmup_power=0.75)))
    assert decay == pytest.approx(0.999, abs=2e-6)
    assert float(ops.convert_to_numpy(anchor_decay(31_622, 0.9999))) == pytest.approx(0.999, abs=2e-6)


def test_fixed_decay_without_warmup_and_cap():
    assert float(ops.convert_to_numpy(anchor_decay(0, 0.99, warmup=False))) == pytest.approx(0.99)
    capped = [float(ops.convert_to_numpy(anchor_decay(t, 0.5))) for t in (10, 1000)]
    assert capped == [0.5, 0.5]
    ramp = [float(ops.convert_to_numpy(anchor_decay(t, 0.999))) for t in range(50)]
    assert np.all(np.diff(ramp) > 0)
