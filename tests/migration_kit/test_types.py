"""Phases, sides and actions are enums that stay equal to, and encode as, their strings."""

from __future__ import annotations

import json

from migration_kit.decide.decision import Decision
from migration_kit.decide.phases import PHASES, PhaseState
from migration_kit.live.tap import ShadowEntry
from migration_kit.types import Action, Phase, Side


def test_each_member_equals_hashes_and_encodes_as_its_string() -> None:
    for member in (*Phase, *Side, *Action):
        assert member == member.value and hash(member) == hash(member.value)
        assert f"{member}" == member.value and json.dumps(member) == json.dumps(member.value)
    assert {"shadow": 1}[Phase.SHADOW] == 1


def test_the_phase_machine_takes_its_phase_names_from_the_enum() -> None:
    assert PHASES == tuple(Phase) == ("shadow", "canary", "primary", "retired", "rolled_back")
    assert json.loads(json.dumps(PhaseState(Phase.CANARY, 5.0).to_dict()))["phase"] == "canary"


def test_records_keep_the_plain_strings_on_the_wire() -> None:
    entry = ShadowEntry(v=1, event={"type": "t", "payload": {}}, serving="candidate")
    assert entry.serving is Side.CANDIDATE
    assert json.loads(entry.model_dump_json())["serving"] == "candidate"
    assert Decision(Action.PROMOTE).to_dict() == Decision("promote").to_dict() == {"action": "promote", "reasons": []}
