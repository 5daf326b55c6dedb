import json
import re

import pytest

import schemas
from schemas import InvalidEvent, validate, validate_dict

README = schemas.SCHEMA_DIR / "README.md"


def readme_examples() -> dict[str, dict]:
    blocks = re.findall(r"```json\n(.*?)\n```", README.read_text(), re.S)
    return {e["event_type"]: e for e in map(json.loads, blocks)}


def test_every_type_is_documented_with_an_example_that_validates():
    examples = readme_examples()
    assert set(examples) == set(schemas.EVENT_TYPES)
    assert len(schemas.EVENT_TYPES) >= 16
    for example in examples.values():
        assert validate(json.dumps(example)) == example


@pytest.mark.parametrize("event_type,key", [
    ("call.offered", "call_id"), ("call.wrapup_ended", "call_id"), ("recording.completed", "call_id"),
    ("agent.state_changed", "agent_id"), ("agent.profile", "agent_id"), ("evaluation.submitted", "agent_id"),
    ("ops.changed", "change_id"),
])
def test_key_fields(event_type, key):
    assert schemas.key_field(event_type) == key


@pytest.mark.parametrize("change,reason", [
    (lambda e: e.pop("event_id"), "event_id"),
    (lambda e: e.update(schema_version=2), "schema_version"),
    (lambda e: e.update(event_type="call.teleported"), "unknown event_type"),
    (lambda e: e.update(caller_number="+8613800000000"), "must not contain"),
    (lambda e: e.update(event_time="2024-03-04 09:00:00"), "event_time"),
    (lambda e: e.update(event_time="2024-02-30T09:00:00.000Z"), "not a real UTC time"),
    (lambda e: e.update(caller_hash="13800000000"), "caller_hash"),
    (lambda e: e.update(direction="sideways"), "direction"),
])
def test_invalid_events_are_rejected_with_a_reason(change, reason):
    event = dict(readme_examples()["call.offered"])
    change(event)
    with pytest.raises(InvalidEvent, match=reason):
        validate_dict(event)


def test_non_json_and_non_objects_are_rejected():
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        validate(b'{"event_type": ')
    with pytest.raises(InvalidEvent, match="JSON object"):
        validate(b"[1, 2]")


def test_speech_needs_utterances_or_flags():
    event = dict(readme_examples()["speech.analyzed"])
    event.pop("utterances")
    with pytest.raises(InvalidEvent):
        validate_dict(event)
    validate_dict({**event, "flags": {"greeting": True}})


def test_time_roundtrip_keeps_milliseconds():
    ms = schemas.time_ms("2024-03-04T09:00:12.340Z")
    assert ms % 1000 == 340
    assert schemas.format_ms(ms) == "2024-03-04T09:00:12.340Z"
