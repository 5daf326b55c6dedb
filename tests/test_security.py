"""Kafka TLS and SASL (PLAIN, SCRAM) for both Kafka clients, and ClickHouse over TLS.

Unit tests check the settings' validation and their mapping to librdkafka's keys and to faust's
credentials (as faust's own aiokafka driver turns them into aiokafka's arguments). The service tests
start a Kafka broker whose client listeners are SASL_PLAINTEXT and SASL_SSL (a test CA made with
openssl) and run callqa's clients against it, and a clickhouse-server with a TLS port.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from callqa import kafka_security
from callqa.config import Config, ConfigError
from scripts import services
from tests.conftest import callqa_env, run_callqa, wait_for
from tests.test_cli_embedded import store_snapshot
from tests.test_worker_kafka import DAY, Worker, stages

USER, PASSWORD = "callqa", "s3cret-Pass"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    return services.tls_files(tmp_path_factory.mktemp("tls"))


def config(**env: str) -> Config:
    return Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "CALLQA_CALLER_HASH_KEY": "k", **env})


def sasl(protocol="SASL_PLAINTEXT", mechanism="PLAIN", password=PASSWORD, **more: str) -> dict[str, str]:
    return {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password, **more}


# --- settings and their mapping -------------------------------------------------------------------

def test_plaintext_by_default_adds_nothing():
    plain = config()
    assert plain.kafka_security_protocol == "PLAINTEXT"
    assert kafka_security.librdkafka(plain) == {}
    assert kafka_security.faust_credentials(plain) is None


def test_librdkafka_keys():
    assert kafka_security.librdkafka(config(**sasl())) == {
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "callqa",
        "sasl.password": "s3cret-Pass"}


def test_librdkafka_keys_with_tls_and_scram(tls):
    scram = config(**sasl("sasl_ssl", "scram-sha-512", KAFKA_SSL_CA_FILE=str(tls["ca"])))  # any case
    assert kafka_security.librdkafka(scram) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "callqa",
        "sasl.password": "s3cret-Pass", "ssl.ca.location": str(tls["ca"])}
    mutual = config(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=str(tls["ca"]),
                    KAFKA_SSL_CERT_FILE=str(tls["cert"]), KAFKA_SSL_KEY_FILE=str(tls["key"]))
    assert kafka_security.librdkafka(mutual) == {
        "security.protocol": "SSL", "ssl.ca.location": str(tls["ca"]),
        "ssl.certificate.location": str(tls["cert"]), "ssl.key.location": str(tls["key"])}


def test_faust_credentials_as_faust_hands_them_to_aiokafka(tls):
    """What faust's aiokafka driver makes of the credentials is what aiokafka gets (SCRAM included)."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(kafka_security.faust_credentials(config(**sasl(mechanism="SCRAM-SHA-256"))))
    assert auth == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                    "sasl_plain_username": "callqa", "sasl_plain_password": "s3cret-Pass", "ssl_context": None}

    auth = credentials_to_aiokafka_auth(kafka_security.faust_credentials(
        config(**sasl("SASL_SSL", KAFKA_SSL_CA_FILE=str(tls["ca"])))))
    context = auth.pop("ssl_context")
    assert auth == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "callqa",
                    "sasl_plain_password": "s3cret-Pass"}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["callqa test CA"]

    auth = credentials_to_aiokafka_auth(kafka_security.faust_credentials(config(
        KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=str(tls["ca"]),
        KAFKA_SSL_CERT_FILE=str(tls["cert"]), KAFKA_SSL_KEY_FILE=str(tls["key"]))))
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_the_password_is_not_in_the_configs_repr():
    assert PASSWORD not in repr(config(**sasl())) and PASSWORD not in repr(kafka_security.faust_credentials(config(**sasl())))


@pytest.mark.parametrize("env,message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    (sasl(mechanism="GSSAPI"), "KAFKA_SASL_MECHANISM='GSSAPI' must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": USER}, "SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": PASSWORD}, "needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": PASSWORD}, "KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"),
    (sasl(KAFKA_SSL_CA_FILE="/etc/hostname"), "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
    (sasl("SASL_SSL", KAFKA_SSL_CA_FILE="/nonexistent/ca.pem"), "KAFKA_SSL_CA_FILE=/nonexistent/ca.pem: no such file"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": __file__}, "KAFKA_SSL_CA_FILE=.*: not a usable PEM file"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": __file__}, "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together"),
    ({"CLICKHOUSE_URL": f"clickhouse://u:{PASSWORD}@db:9440/callqa?secure=True&ca_certs=/nonexistent/ca.pem"},
     "CLICKHOUSE_URL: ca_certs=/nonexistent/ca.pem: no such file"),
    ({"CLICKHOUSE_URL": f"clickhouse://u:{PASSWORD}@db:9000/callqa?ca_certs=/etc/hostname"}, "but not secure=True"),
    ({"CLICKHOUSE_URL": f"clickhouse://u:{PASSWORD}@db:9440/callqa?secure=maybe"}, "secure=maybe must be True or False"),
])
def test_bad_security_settings_are_one_line_errors_without_the_password(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        config(**env)
    assert "\n" not in str(raised.value) and PASSWORD not in str(raised.value)


def test_the_key_file_must_load_with_the_certificate(tls):
    with pytest.raises(ConfigError, match="KAFKA_SSL_CERT_FILE=.*not a usable PEM file"):
        config(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=str(tls["cert"]), KAFKA_SSL_KEY_FILE=str(tls["ca-key"]))


def test_the_clickhouse_url_reaches_the_driver_whole(tls):
    """secure=True and ca_certs reach clickhouse-driver; messages name host, port and TLS, not the password."""
    from sinks.store import open_store

    url = f"clickhouse://callqa:{PASSWORD}@db.example:9440/callqa?secure=True&ca_certs={tls['ca']}&verify=True"
    store = open_store(config(CLICKHOUSE_URL=url).clickhouse_url, None)
    connection = store._client.connection
    assert (connection.secure_socket, connection.verify_cert, connection.ssl_options) == (True, True, {"ca_certs": str(tls["ca"])})
    assert (connection.database, connection.password) == ("callqa", PASSWORD)
    assert store.address == "db.example:9440 (TLS)"
    assert open_store(f"clickhouses://u:{PASSWORD}@db.example/x", None).address == "db.example:9440 (TLS)"
    assert open_store(f"clickhouse://u:{PASSWORD}@db.example/x", None).address == "db.example:9000"


def test_every_client_the_worker_makes_gets_the_security(tls, tmp_path, monkeypatch):
    """create_app passes faust's credentials and gives the worker's own readers (profiles replica,
    log probe) the librdkafka keys; the sink's consumer gets them too."""
    import confluent_kafka

    import streams.app
    from callqa.cli.operate import _sink

    secured = config(**sasl("SASL_SSL", "SCRAM-SHA-256", KAFKA_SSL_CA_FILE=str(tls["ca"])), CALLQA_DATA_DIR=str(tmp_path))
    expected = kafka_security.librdkafka(secured)
    made = []

    class Reader:
        def __init__(self, *args):
            made.append(args[-1])

        def close(self):
            pass

    monkeypatch.setattr(streams.app, "ChangelogReplica", Reader)
    monkeypatch.setattr(streams.app, "LogProbe", Reader)
    app = streams.app.create_app(secured)
    credentials = app.conf.broker_credentials
    assert (credentials.protocol.value, credentials.mechanism.value, credentials.username, credentials.password) == (
        "SASL_SSL", "SCRAM-SHA-256", "callqa", PASSWORD)
    assert made == [expected, expected]

    class SinkConsumer:
        def __init__(self, conf):
            made.append(conf)

        def subscribe(self, topics):
            pass

    monkeypatch.setattr(confluent_kafka, "Consumer", SinkConsumer)
    _sink(secured, None)
    assert made[-1].items() >= expected.items() and made[-1]["group.id"] == "callqa-sink"


# --- a real broker with SASL_PLAINTEXT and SASL_SSL listeners --------------------------------------

@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory, tls):
    """A Kafka broker whose client listeners are SASL_PLAINTEXT (``port``) and SASL_SSL (``tls_port``),
    with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one user."""
    server = services.start_kafka(tmp_path_factory.mktemp("secure-kafka"), users={USER: PASSWORD}, tls=tls)
    yield server
    server.stop()


def lag(conf: dict, group: str, topics: list[str]) -> int:
    """Messages in ``topics`` not yet committed by ``group``."""
    consumer = Consumer({**conf, "group.id": group})
    try:
        total = 0
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for tp in consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10):
                total += max(0, consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0))
        return total
    finally:
        consumer.close()


@pytest.mark.services
def test_the_whole_pipeline_over_sasl_ssl_with_scram(secure_kafka, tls, tmp_path):
    """`callqa replay` (admin client, producer), `callqa run` (faust's aiokafka consumer and producer, the
    profiles replica, the log probe, the sink's consumer) and `callqa check` (admin client, consumer), all
    over SASL_SSL with SCRAM-SHA-512 and the test CA: the same results as the embedded replay."""
    env = callqa_env(tmp_path / "kafka", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{secure_kafka.tls_port}",
                     **sasl("SASL_SSL", "SCRAM-SHA-512", KAFKA_SSL_CA_FILE=str(tls["ca"])), CALLQA_SINK_STALE_S="600")
    published = run_callqa(["replay", str(DAY)], env)
    assert published.returncode == 0 and "published 65 events" in published.stdout, published.stderr
    conf = {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], **kafka_security.librdkafka(Config.from_env(env))}
    app = env["CALLQA_APP_ID"]
    internal, outputs = stages(env)  # every topic the sink reads
    quiet = []

    def drained() -> bool:
        try:
            done = (lag(conf, app, [env["CALLQA_TOPIC_EVENTS"], *internal]) == 0
                    and lag(conf, f"{app}-sink", outputs) == 0)
        except KafkaException:  # a coordinator still loading
            done = False
        quiet[:] = quiet if done and quiet else ([time.monotonic()] if done else [])
        return done and time.monotonic() - quiet[0] >= 5

    worker = Worker(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: worker.proc.poll() is not None or drained(), 300, 1, "every stage drained")
        assert worker.proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert PASSWORD not in log
    check = run_callqa(["check"], env)
    assert check.returncode == 0 and "sink lag 0 messages" in check.stdout, check.stdout + check.stderr

    kafka = store_snapshot(tmp_path / "kafka" / "data")
    embedded_env = callqa_env(tmp_path / "embedded")
    assert run_callqa(["replay", str(DAY)], embedded_env).returncode == 0
    embedded = store_snapshot(tmp_path / "embedded" / "data")
    assert len(kafka["calls"]) == 13 and len(kafka["raw"]) == 62 and len(kafka["dead"]) == 2
    assert kafka["calls"] == embedded["calls"] and kafka["kpi"] == embedded["kpi"] and kafka["raw"] == embedded["raw"]


@pytest.mark.services
def test_plain_over_sasl_plaintext_for_both_clients_and_wrong_passwords_refused(secure_kafka, tmp_path, caplog):
    """PLAIN on the SASL_PLAINTEXT listener: the publisher and the admin client (confluent-kafka) and an
    aiokafka consumer made from the worker's faust credentials read and write; a wrong password is a
    clear error from either client, and from `callqa check` (exit 3)."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from callqa.publish import publish
    from callqa.topics import admin_client
    from streams.app import create_app

    bootstrap = f"127.0.0.1:{secure_kafka.port}"
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=bootstrap, **sasl())
    right = Config.from_env(env)
    topic = right.topic_events
    lines = DAY.read_bytes().splitlines()
    assert publish(lines, bootstrap, topic, security=kafka_security.librdkafka(right)) == len(lines)
    assert topic in admin_client(bootstrap, kafka_security.librdkafka(right)).list_topics(timeout=10).topics

    async def read(credentials) -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    request_timeout_ms=10000, **credentials_to_aiokafka_auth(credentials))
        await consumer.start()
        try:
            got = []
            while len(got) < len(lines):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                got += [m.value for messages in batch.values() for m in messages]
            return got
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(read(create_app(right).conf.broker_credentials))) == sorted(lines)

    wrong = Config.from_env({**env, "KAFKA_SASL_PASSWORD": "not-the-password"})
    with pytest.raises(KafkaException, match="SASL authentication error: Authentication failed"):
        admin_client(bootstrap, kafka_security.librdkafka(wrong)).list_topics(timeout=5)
    caplog.set_level(logging.ERROR, "aiokafka")
    with pytest.raises(Exception, match="Unable to bootstrap"):
        asyncio.run(read(kafka_security.faust_credentials(wrong)))
    assert "SaslAuthenticationFailed" in caplog.text

    check = run_callqa(["check"], {**env, "KAFKA_SASL_PASSWORD": "not-the-password"})
    assert check.returncode == 3 and "SASL authentication error" in check.stderr, check.stderr
    assert "not-the-password" not in check.stderr + check.stdout


@pytest.mark.services
def test_a_broker_certificate_not_signed_by_the_ca_file_is_refused(secure_kafka):
    """TLS checks the broker: with the system's trust store only (no KAFKA_SSL_CA_FILE) the test CA's
    certificate is refused, by confluent-kafka and by aiokafka, with the reason."""
    from callqa.topics import admin_client

    untrusted = config(**sasl("SASL_SSL"))
    with pytest.raises(KafkaException, match="certificate verify failed"):
        admin_client(f"127.0.0.1:{secure_kafka.tls_port}", kafka_security.librdkafka(untrusted)).list_topics(timeout=5)
    context = kafka_security.ssl_context(untrusted)
    with socket.create_connection(("127.0.0.1", secure_kafka.tls_port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()


@pytest.mark.services
def test_clickhouse_over_tls_with_a_ca_file(tls, tmp_path):
    """A ClickHouse server's TLS port through CLICKHOUSE_URL's secure=True and ca_certs; without the
    CA file the server's certificate is refused (unreachable, exit 3's error), the password never shown."""
    from sinks.store import StoreUnreachable, open_store

    server = services.start_clickhouse(tmp_path / "clickhouse", tls=tls)
    try:
        base = f"clickhouse://default:@127.0.0.1:{server.tls_port}/default?secure=True"
        store = open_store(config(CLICKHOUSE_URL=f"{base}&ca_certs={tls['ca']}").clickhouse_url, None)
        store.execute("CREATE TABLE tls_check (n UInt32) ENGINE = Memory")
        store.insert("tls_check", [{"n": 1}, {"n": 2}])
        assert store.query("SELECT sum(n) FROM tls_check") == (["sum(n)"], [(3,)])
        store.close()
        refused = open_store(f"clickhouse://default:{PASSWORD}@127.0.0.1:{server.tls_port}/default?secure=True", None)
        with pytest.raises(StoreUnreachable, match=r"\(TLS\) unreachable: .*CERTIFICATE_VERIFY_FAILED") as raised:
            refused.query("SELECT 1")
        assert PASSWORD not in str(raised.value)
    finally:
        server.stop()
