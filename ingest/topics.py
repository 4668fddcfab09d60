"""The pipeline's Kafka topics: created idempotently, described for ``schema describe``."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import KafkaSettings

# Dead letters are evidence for a human: keep them a month rather than the broker default week.
DLQ_CONFIG = {"retention.ms": str(30 * 24 * 3600 * 1000)}
# The speed layer's state: the latest record per user is all a restore needs. Compaction never
# touches the active segment, and at low rates a segment otherwise rolls only after the 7-day
# default (segment.ms): roll hourly, so superseded records go within about an hour and a restore
# reads little more than the live state.
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.25",
}


def pipeline_topics(settings: KafkaSettings) -> list[str]:
    """Every topic the pipeline uses: clicks, dead letters, the speed changelog."""
    return [settings.clicks_topic, settings.dlq_topic, settings.speed_changelog_topic]


@dataclass(frozen=True, slots=True)
class TopicState:
    """What exists of one topic."""

    name: str
    exists: bool
    partitions: int = 0
    created: bool = False


def _admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient({**settings.client_config(), "socket.timeout.ms": 10_000})


def describe_topics(settings: KafkaSettings, names: list[str] | None = None) -> list[TopicState]:
    """The state of the pipeline's topics (or of ``names``)."""
    wanted = names or pipeline_topics(settings)
    try:
        metadata = _admin(settings).list_topics(timeout=10)
    except KafkaException as exc:
        raise RetriableError(
            f"Kafka at {settings.bootstrap_servers} did not answer: {exc}"
        ) from exc
    states = []
    for name in wanted:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            states.append(TopicState(name, exists=False))
        else:
            states.append(TopicState(name, exists=True, partitions=len(topic.partitions)))
    return states


def create_topics(settings: KafkaSettings, names: list[str] | None = None) -> list[TopicState]:
    """Create the pipeline's topics if absent; an existing topic is left as it is."""
    wanted = names or pipeline_topics(settings)
    missing = [state.name for state in describe_topics(settings, wanted) if not state.exists]
    configs = {settings.dlq_topic: DLQ_CONFIG, settings.speed_changelog_topic: CHANGELOG_CONFIG}
    created: set[str] = set()
    if missing:
        # Keep the client referenced until the futures resolve: a collected AdminClient
        # destroys its handle and fails them with _DESTROY.
        admin = _admin(settings)
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                    config=configs.get(name, {}),
                )
                for name in missing
            ],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.add(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race: fine
                    raise SchemaError(f"cannot create Kafka topic {name}: {exc}") from exc
    existing = [name for name in wanted if name not in created and configs.get(name)]
    if existing:
        _set_configs(settings, {name: configs[name] for name in existing})
    states = describe_topics(settings, wanted)
    return [TopicState(s.name, s.exists, s.partitions, created=s.name in created) for s in states]


def _set_configs(settings: KafkaSettings, configs: dict[str, dict[str, str]]) -> None:
    """Bring existing topics to the pipeline's settings (a topic made by an older release lacks
    the newer ones); each key is set on its own, anything else on the topic is left as it is."""
    admin = _admin(settings)
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in sorted(values.items())
            ],
        )
        for name, values in configs.items()
    ]
    for resource, future in admin.incremental_alter_configs(resources).items():
        try:
            future.result()
        except KafkaException as exc:
            raise SchemaError(
                f"cannot set the configuration of Kafka topic {resource.name}: {exc}"
            ) from exc


def topic_configs(settings: KafkaSettings, name: str) -> dict[str, str]:
    """The topic's configuration as the broker reports it (every key, defaults included)."""
    resource = ConfigResource(ResourceType.TOPIC, name)
    admin = _admin(settings)  # referenced until the future resolves (see create_topics)
    (future,) = admin.describe_configs([resource]).values()
    try:
        entries = future.result()
    except KafkaException as exc:
        raise RetriableError(f"cannot describe Kafka topic {name}: {exc}") from exc
    return {key: entry.value for key, entry in entries.items()}


def delete_topics(settings: KafkaSettings, names: list[str]) -> None:
    """Delete topics (tests clean up with this); absent ones are ignored."""
    admin = _admin(settings)
    futures = admin.delete_topics(names, operation_timeout=30)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
