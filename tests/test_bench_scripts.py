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
