"""Create callqa's Kafka topics (idempotent) before anything produces to or consumes from them."""
from __future__ import annotations

from collections import deque

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from .config import Config
from .kafka_security import librdkafka


def internal_topic(config: Config, name: str) -> str:
    """The name of one of the worker's internal (repartition) topics."""
    return f"{config.app_id}-{name}"


INTERNAL = ("fcr", "windows", "monitor", "sampler")  # the input topics of the stages after "events"
# The largest message callqa's topics take (their ``max.message.bytes``; a broker's default is 1 MiB).
# The worker packs rows and bundles into messages of about ``MESSAGE_BYTES``; one row alone may be as large
# as an event (CALLQA_MAX_EVENT_BYTES, at most a quarter of this) with what is derived from it.
MESSAGE_MAX_BYTES = 16 << 20
MESSAGE_BYTES = 512 << 10
TOPIC_CONFIG = {"max.message.bytes": str(MESSAGE_MAX_BYTES)}
MAX_STATE_VALUE = 64 << 20  # a drift-chart or sampler stage partition keeps its state in one value


def topic_names(config: Config) -> list[str]:
    """Every topic the worker reads or writes except faust's changelogs: created up front, so the
    worker's consumer is assigned all of them from the start."""
    return [*(internal_topic(config, name) for name in INTERNAL), config.topic_events, config.topic_dead_letters, config.topic_call_records,
            config.topic_kpis, config.topic_evaluations, config.topic_alerts, config.topic_sampling,
            config.topic_sampling_decisions, config.topic_review_queue, config.topic_detector_state, config.topic_raw_events]


def changelog_topics(config: Config) -> dict[str, dict[str, str]]:
    """The changelogs of the worker's tables (faust's names: ``<app id>-<table>-changelog``), each with its
    topic config: created up front too. A worker that created them itself at start-up could subscribe
    before they were in the cluster's metadata: faust then ignored them and the worker consumed nothing."""
    from callqa.core.graph import STAGES

    stage = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_STATE_VALUE)}
    return {**{f"{config.app_id}-stage-{name}-changelog": stage for name in STAGES},
            f"{config.app_id}-agent-profiles-changelog": {"cleanup.policy": "compact"}}


def sink_routes(config: Config) -> dict[str, str]:
    """The topics the ClickHouse sink reads, each with the table it writes: every output topic of the worker
    into its own table (the events it applied, as received, into ``raw_events``)."""
    from sinks import tables

    return {config.topic_raw_events: tables.RAW_EVENTS, config.topic_call_records: tables.CALL_RECORDS,
            config.topic_kpis: tables.KPI_WINDOWS, config.topic_dead_letters: tables.DEAD_LETTERS,
            config.topic_evaluations: tables.EVALUATIONS, config.topic_alerts: tables.ALERTS,
            config.topic_sampling: tables.SAMPLING_RATES, config.topic_sampling_decisions: tables.SAMPLING_DECISIONS,
            config.topic_review_queue: tables.REVIEW_QUEUE, config.topic_detector_state: tables.DETECTOR_STATE}


def sink_group(config: Config) -> str:
    """The sink's consumer group."""
    return f"{config.app_id}-sink"


class _AdminClient(AdminClient):
    """An AdminClient whose failed ``list_topics`` gives the broker's reason when there is one: librdkafka
    tells a refused login (wrong SASL password) or an untrusted certificate to its error callback only,
    and ``list_topics`` just says "Broker transport failure"."""

    def __init__(self, conf: dict):
        self._errors: deque = deque(maxlen=8)
        super().__init__({**conf, "error_cb": self._errors.append})

    def list_topics(self, *args, **kwargs):
        try:
            return super().list_topics(*args, **kwargs)
        except KafkaException:
            self.poll(0)  # serves the error callback
            reason = next((e for e in reversed(self._errors)
                           if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)), None)
            if reason is None:
                raise
            raise KafkaException(reason) from None


def admin_client(bootstrap_servers: str, security: dict | None = None) -> AdminClient:
    """An admin client that reports an unreachable cluster (or a refused login) by exception only (not by
    logging each retry); ``security``: the TLS and SASL keys (``kafka_security.librdkafka``)."""
    return _AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 2, **(security or {})})


def ensure_topics(config: Config, timeout_s: float = 30, probe_s: float = 10) -> None:
    """Create the missing topics with ``CALLQA_TOPIC_PARTITIONS`` partitions; raises KafkaException
    (also when no broker answers within ``probe_s``)."""
    admin = admin_client(config.kafka_bootstrap_servers, librdkafka(config))
    admin.list_topics(timeout=probe_s)  # KafkaException when the cluster cannot be reached
    names = topic_names(config)
    changelogs = changelog_topics(config)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=config.topic_partitions, replication_factor=1, config=TOPIC_CONFIG)
         for name in names]
        + [NewTopic(name, num_partitions=config.topic_partitions, replication_factor=1, config=topic_config)
           for name, topic_config in changelogs.items()],
        request_timeout=timeout_s,
    )
    existing = []
    for name, future in futures.items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            existing.append(name)
    _raise_message_limit(admin, [name for name in existing if name != config.topic_events and name not in changelogs],
                         timeout_s)


def _raise_message_limit(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """The topics the worker writes, made by an earlier version (or by hand), take messages up to
    ``MESSAGE_MAX_BYTES`` too. (An existing events topic keeps its limit: what it refuses, the publisher
    dead-letters.)"""
    if not names:
        return
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in names],
                                       request_timeout=timeout_s)
    low = [resource for resource, future in described.items()
           if int(future.result(timeout_s)["max.message.bytes"].value) < MESSAGE_MAX_BYTES]
    if not low:
        return
    entry = ConfigEntry("max.message.bytes", str(MESSAGE_MAX_BYTES), incremental_operation=AlterConfigOpType.SET)
    altered = admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, r.name, incremental_configs=[entry])
                                               for r in low], request_timeout=timeout_s)
    for future in altered.values():
        future.result(timeout_s)
