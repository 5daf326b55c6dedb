"""One validated event through the core: call assembly, then KPI windows.

``Processor.process`` is stage one (keyed by call id); ``KpiAggregator.apply`` is stage two
(keyed by window). The embedded runner chains them directly; the faust worker puts a Kafka topic
between them so that each window is owned by one partition.
"""
from __future__ import annotations

from collections.abc import MutableMapping

from .assembly import CallAssembler, Update


class Processor:
    def __init__(self, call_states: MutableMapping[str, dict], window_sizes_s: tuple[int, ...]):
        self.calls = CallAssembler(call_states, window_sizes_s)

    def process(self, event: dict) -> Update | None:
        """Outputs of one validated event; None when it changes nothing."""
        if event["event_type"].startswith("call."):
            return self.calls.apply(event)
        return None  # agent, recording, QA, speech and ops events feed later stages
