"""How every Kafka client of the project reaches a secured cluster: TLS and SASL from settings.

`KafkaSecurity` is a pydantic-settings mixin (the services' settings class takes it in, so its fields are read with the
service's prefix: `AUDIT_KAFKA_SECURITY_PROTOCOL`...; `python -m shared.topics` reads them with `MCOC_`), and
`client_kwargs` turns it into the keyword arguments `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaAdminClient`
all take. Every client the project constructs is given them (tests/shared/test_kafka_security.py checks the source):
a client left out would be the one that cannot connect to the cluster, or the one that talks to it in clear.

- PLAINTEXT (the default, the local broker): no keyword at all, as before.
- SSL: TLS, the broker's certificate checked against `kafka_ssl_cafile` (or the system's CAs), and the client's own
  certificate (`kafka_ssl_certfile`, `kafka_ssl_keyfile`) when the cluster authenticates clients by TLS.
- SASL_PLAINTEXT, SASL_SSL: a user name and password by `kafka_sasl_mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
  in clear or inside TLS. PLAIN sends the password itself: only inside TLS outside a test machine.

The password is a `SecretStr`: a settings object's repr, its dump and the logs show `**********`; only the keyword
arguments handed to the client hold it in clear (never logged).
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseSettings):
    """The Kafka security settings every service and `python -m shared.topics` share (a mixin: no prefix of its own)."""

    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT",
        description="How the Kafka clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL "
        "(a user name and password, in clear or inside TLS).",
    )
    kafka_sasl_mechanism: Mechanism = Field(
        "SCRAM-SHA-512",
        description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str = Field("", description="SASL user name (with SASL_PLAINTEXT or SASL_SSL).")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password (with SASL_PLAINTEXT or SASL_SSL; never logged)."
    )
    kafka_ssl_cafile: str | None = Field(
        None,
        description="CA certificates (PEM) the brokers' certificates are checked against, with SSL or SASL_SSL "
        "(default: the system's CAs).",
    )
    kafka_ssl_certfile: str | None = Field(
        None, description="The client's certificate (PEM), when the brokers authenticate clients by TLS."
    )
    kafka_ssl_keyfile: str | None = Field(None, description="The private key (PEM) of `kafka_ssl_certfile`.")
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to (SSL, SASL_SSL)."
    )

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.kafka_security_protocol.startswith("SASL_") and not self.kafka_sasl_username:
            raise ValueError(f"kafka_security_protocol {self.kafka_security_protocol} needs a kafka_sasl_username")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("kafka_ssl_keyfile without kafka_ssl_certfile")
        return self


def client_kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    """The security keyword arguments of `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaAdminClient` (the same
    names for all three); None or PLAINTEXT: none at all. Holds the SASL password in clear: never log it."""
    if security is None or security.kafka_security_protocol == "PLAINTEXT":
        return {}
    protocol = security.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(security)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        kwargs["sasl_mechanism"] = security.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = security.kafka_sasl_username
        kwargs["sasl_plain_password"] = security.kafka_sasl_password.get_secret_value()
    return kwargs


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """The TLS context of the clients, made by aiokafka's helper (TLS 1.2 at least, the broker's certificate
    required and checked)."""
    context = create_ssl_context(
        cafile=security.kafka_ssl_cafile, certfile=security.kafka_ssl_certfile, keyfile=security.kafka_ssl_keyfile
    )
    context.check_hostname = security.kafka_ssl_check_hostname
    return context


def described(security: KafkaSecurity | None) -> str:
    """How the clients connect, for a log line or an error message (no password)."""
    if security is None or security.kafka_security_protocol == "PLAINTEXT":
        return "PLAINTEXT"
    if security.kafka_security_protocol == "SSL":
        return "SSL"
    return f"{security.kafka_security_protocol} {security.kafka_sasl_mechanism} as {security.kafka_sasl_username}"


def security_of(settings: object) -> KafkaSecurity | None:
    """The security settings of a settings object that takes `KafkaSecurity` in; None (PLAINTEXT) for one that does
    not yet."""
    return settings if isinstance(settings, KafkaSecurity) else None
