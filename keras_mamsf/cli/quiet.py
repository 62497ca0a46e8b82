"""Keep TensorFlow's native start-up log lines off the user's screen (`mamsf --verbose` shows them).

TensorFlow's C++ runtime writes "WARNING: All log messages before absl::InitializeLog() ...",
oneDNN / CUDA-driver / CPU-feature notices (and a `cuInit` error on machines without a GPU), and
the TFLite converter and interpreter their settings and delegate notices, straight to file
descriptor 2, before and regardless of `TF_CPP_MIN_LOG_LEVEL`. The command routes descriptor 2
through a pipe and a thread that drops exactly those lines; everything else (our messages, Keras'
progress, tracebacks) passes through unchanged.
"""

import atexit
import logging
import os
import re
import sys
import threading

NATIVE_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\]"  # absl's "I0000 00:00:17... 123 port.cc:153] ..."
    rb"|To enable the following instructions:"  # the second line of the CPU-feature notice
    rb"|fully_quantize: \d"  # the TFLite converter's quantization settings
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate)"
)
_installed = []


def filter_native_logs():
    """Install the filter on descriptor 2 for the rest of the process (once)."""
    if _installed:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what TensorFlow does honour
    for name in ("tensorflow", "absl"):  # their Python-side notices (retracing, TFDS configurations, ...)
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stderr.flush()
    saved, target = os.dup(2), os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as source, os.fdopen(target, "wb", buffering=0) as sink:
            for line in iter(source.readline, b""):
                if not NATIVE_LOG_LINE.match(line):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="mamsf-stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last writer: the pump reads to the end and stops
        thread.join(timeout=5)

    atexit.register(restore)
    _installed.append(thread)
