"""Live traffic recorded to a log replays with the effect responses it really got."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import shadow_app
from legacy_bus import BadEventLog, EventLog
from migration_kit.run.record import record_stream

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _fresh_charges():
    shadow_app.REAL_CHARGES.clear()


def test_recorded_live_traffic_replays_with_the_recorded_effect_responses(redis_url, tmp_path):
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        for i in range(30):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush()
    out = tmp_path / "live.jsonl"
    assert record_stream(m, out) == {"written": 30, "bad": 0}
    entries = list(EventLog(out))
    assert len(entries) == 30 and all(e.effects and e.effects[0].response["status"] == "approved" for e in entries)
    # The port's stub answers differently ({"status": "stub"}, no "auth"): with the recorded
    # responses both paths see what the live call got, and agree.
    seen = []
    report = shadow_app.migration().replay(out, on_result=lambda c, _t: seen.append(c))
    assert (report.total, report.divergent, report.errors) == (30, 0, 0)
    captured = [e for c in seen for e in c.candidate.emitted if e.type == "PaymentCaptured"]
    assert [e.payload["auth"] for e in captured] == [f"auth-o{i}" for i in range(30)]
    assert all(call.mode == "recorded" for c in seen for call in c.legacy.effects + c.candidate.effects)
    assert len(shadow_app.REAL_CHARGES) == 30  # the replay ran no real payment


def test_without_recorded_responses_the_stub_answers(redis_url, tmp_path):
    out = tmp_path / "bare.jsonl"
    EventLog(out).write([shadow_app.order(i) for i in range(3)])
    report = shadow_app.migration().replay(out)
    assert report.errors == 3  # the stub has no "auth": both paths fail the same way
    assert report.divergent == 0


def test_record_never_overwrites_a_log_and_the_cli_records(redis_url, tmp_path):
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        for i in range(4):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush()
    out = tmp_path / "live.jsonl"
    out.write_text("precious\n")
    with pytest.raises(BadEventLog, match="already exists"):
        record_stream(m, out)
    assert out.read_text() == "precious\n"
    out.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "migration_kit", "record", "--app", "shadow_app:migration", "--store", redis_url, "--out", str(out)],
        capture_output=True, text=True, cwd=HERE, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "recorded 4 events" in proc.stderr and len(list(EventLog(out))) == 4
