"""Run every benchmark in bench/, one after the other (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["bench_replay.py", "throughput"],
    ["bench_replay.py", "memory", "--sizes", "10000", "100000"],
    ["bench_comparator.py"],
    ["bench_checkpointer.py"],
    ["bench_tracing.py"],
    ["bench_policy_simulation.py"],
    ["bench_shadow_tap.py"],
    ["bench_shadow_workers.py"],
    ["bench_adapters.py"],
    ["bench_database.py"],
    ["bench_distributed_replay.py"],
]


def main() -> int:
    failed = []
    for run in RUNS:
        print(f"\n=== {' '.join(run)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], cwd=HERE.parent).returncode != 0:
            failed.append(" ".join(run))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
