"""Kafka TLS and SASL settings for both of callqa's Kafka clients, from the configuration.

``librdkafka`` gives the keys every confluent-kafka client's dict gets (the admin client, the
publisher, the sink's and ``callqa check``'s consumers, the worker's replica and log probe);
``faust_credentials`` gives faust's ``broker_credentials`` (aiokafka underneath). faust's aiokafka
driver (``credentials_to_aiokafka_auth``) passes a ``SASLCredentials``' mechanism, user and password
on as aiokafka's ``sasl_mechanism``, ``sasl_plain_username`` and ``sasl_plain_password``, and aiokafka
speaks PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 with them: the three mechanisms work with both clients.

Nothing here logs (the password is in the clients' configuration only).
"""
from __future__ import annotations

import ssl

from .config import Config


def _sasl(config: Config) -> bool:
    return config.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _tls(config: Config) -> bool:
    return config.kafka_security_protocol in ("SSL", "SASL_SSL")


def librdkafka(config: Config) -> dict[str, str]:
    """The security keys of a confluent-kafka (librdkafka) client's configuration ({} on PLAINTEXT)."""
    if config.kafka_security_protocol == "PLAINTEXT":
        return {}
    keys = {"security.protocol": config.kafka_security_protocol}
    if _sasl(config):
        keys.update({"sasl.mechanism": config.kafka_sasl_mechanism, "sasl.username": config.kafka_sasl_username,
                     "sasl.password": config.kafka_sasl_password})
    if _tls(config):
        for key, path in (("ssl.ca.location", config.kafka_ssl_ca_file),
                          ("ssl.certificate.location", config.kafka_ssl_cert_file),
                          ("ssl.key.location", config.kafka_ssl_key_file)):
            if path:
                keys[key] = path
    return keys


def ssl_context(config: Config) -> ssl.SSLContext:
    """A client TLS context: the brokers' certificates checked (against KAFKA_SSL_CA_FILE, else the
    system's trust store) and their host names verified; the client certificate for mutual TLS."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.kafka_ssl_ca_file)
    if config.kafka_ssl_cert_file:
        context.load_cert_chain(config.kafka_ssl_cert_file, config.kafka_ssl_key_file)
    return context


def faust_credentials(config: Config):
    """faust's ``broker_credentials``: ``SASLCredentials`` (with a TLS context on SASL_SSL),
    ``SSLCredentials`` on SSL, None on PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials

    if _sasl(config):
        return SASLCredentials(username=config.kafka_sasl_username, password=config.kafka_sasl_password,
                               mechanism=config.kafka_sasl_mechanism,
                               ssl_context=ssl_context(config) if _tls(config) else None)
    if _tls(config):
        return SSLCredentials(ssl_context(config))
    return None

