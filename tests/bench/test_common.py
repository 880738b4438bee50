"""The benchmarks' shared measures (bench/_common.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from bench._common import peak_rss_kb
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"own": peak_rss_kb(), "ru_maxrss": usage.ru_maxrss}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_process_peak_leaves_out_the_parents_memory() -> None:
    # The parent holds 96 MB more than a bare interpreter needs, as the sync bench's parent holds
    # the sandbox's data; the child's own peak must not include it.
    ballast = bytearray(96 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True, check=True
    )
    peaks = json.loads(done.stdout)
    assert peaks["own"] < 64 * 1024, peaks  # a bare interpreter: tens of MB at most
    # What the kernel reports as ru_maxrss after fork and exec carries the parent's peak: the
    # measure the benches used before, which made the parent's growth look like the worker's.
    assert peaks["ru_maxrss"] > 96 * 1024, peaks
    del ballast
