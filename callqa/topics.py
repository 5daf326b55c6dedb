"""Create callqa's Kafka topics (idempotent) before anything produces to or consumes from them."""
from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Config


def internal_topic(config: Config, name: str) -> str:
    """The name of one of the worker's internal (repartition) topics."""
    return f"{config.app_id}-{name}"


INTERNAL = ("fcr", "windows", "monitor", "sampler")  # the input topics of the stages after "events"


def topic_names(config: Config) -> list[str]:
    """Every topic the worker reads or writes except faust's changelogs: created up front, so the
    worker's consumer is assigned all of them from the start."""
    return [*(internal_topic(config, name) for name in INTERNAL), config.topic_events, config.topic_dead_letters, config.topic_call_records,
            config.topic_kpis, config.topic_evaluations, config.topic_alerts, config.topic_sampling,
            config.topic_sampling_decisions, config.topic_review_queue]


def sink_routes(config: Config) -> dict[str, str]:
    """The topics the ClickHouse sink reads, each with the table it writes: the input topic's valid events
    into ``raw_events``, every output topic into its own table."""
    from sinks import tables

    return {config.topic_events: tables.RAW_EVENTS, config.topic_call_records: tables.CALL_RECORDS,
            config.topic_kpis: tables.KPI_WINDOWS, config.topic_dead_letters: tables.DEAD_LETTERS,
            config.topic_evaluations: tables.EVALUATIONS, config.topic_alerts: tables.ALERTS,
            config.topic_sampling: tables.SAMPLING_RATES, config.topic_sampling_decisions: tables.SAMPLING_DECISIONS,
            config.topic_review_queue: tables.REVIEW_QUEUE}


def sink_group(config: Config) -> str:
    """The sink's consumer group."""
    return f"{config.app_id}-sink"


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An admin client that reports an unreachable cluster by exception only (not by logging each retry)."""
    return AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 2})


def ensure_topics(config: Config, timeout_s: float = 30, probe_s: float = 10) -> None:
    """Create the missing topics with ``CALLQA_TOPIC_PARTITIONS`` partitions; raises KafkaException
    (also when no broker answers within ``probe_s``)."""
    admin = admin_client(config.kafka_bootstrap_servers)
    admin.list_topics(timeout=probe_s)  # KafkaException when the cluster cannot be reached
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=config.topic_partitions, replication_factor=1) for name in topic_names(config)],
        request_timeout=timeout_s,
    )
    for future in futures.values():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
