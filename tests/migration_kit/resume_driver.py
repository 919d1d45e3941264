"""Run (or resume) a replay of the resume app in its own process; print each counted event."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import resume_app  # noqa: E402


def main() -> None:
    store, log, out = sys.argv[1], sys.argv[2], sys.argv[3]
    resume = "--resume" in sys.argv
    with resume_app.migration(store) as m:
        report = m.replay(log, resume=resume, checkpoint_every=25, on_result=lambda c, t: print(t.total, flush=True))
    Path(out).write_text(json.dumps(summary(report.to_dict())))


def summary(d: dict) -> dict:
    """What must be equal between an uninterrupted and a resumed run.

    Latency numbers in the decision's reasons are timings of two different
    runs, so reasons that mention milliseconds are compared by their rule and
    outcome only; every count-based reason is compared whole.
    """
    reasons = [r if " ms" not in r else r.split(":")[0] for r in d["decision"]["reasons"]]
    return {k: d[k] for k in ("total", "divergent", "errors", "by_node")} | {
        "action": d["decision"]["action"],
        "reasons": reasons,
        "groups": [[g["path"], g["count"], g["first_event"], g["last_event"]] for g in d["groups"]],
        "examples": [e["event"]["id"] for e in d["examples"]],
    }


if __name__ == "__main__":
    main()
