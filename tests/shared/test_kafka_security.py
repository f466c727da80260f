"""Kafka security from settings (issue 27): the keyword arguments every client takes for each protocol and mechanism,
a password that never shows, and no client in the source constructed without them."""

from __future__ import annotations

import ast
import asyncio
import logging
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from shared.kafka_security import KafkaSecurity, client_kwargs, described, security_of
from shared.relay import OutboxRelay, make_producer
from shared.topics import CUSTODY_EVENTS, TOPICS, TopicSettings, ensure_topics, list_topics, physical
from tests.conftest import ENV

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Kafka-passw0rd"
CA = "/etc/ssl/certs/ca-certificates.crt"
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
SECURED = {"EventConsumer": "security", "OutboxRelay": "security"}  # the project's own wrappers, and their keyword

# Clients constructed without the security settings today, in files another part of issue 27 edits: each must leave
# this list once it is given them (the test below fails while the list names a file that no longer needs to be here).
NOT_YET: set[tuple[str, str]] = set()  # constructions not secured yet (none)


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-512", **more: object) -> KafkaSecurity:
    return KafkaSecurity.model_validate(
        {
            "kafka_security_protocol": protocol,
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": "custody",
            "kafka_sasl_password": PASSWORD,
            **more,
        }
    )


def test_plaintext_gives_no_keyword() -> None:
    assert client_kwargs(None) == {}
    assert client_kwargs(KafkaSecurity()) == {}
    assert KafkaSecurity().kafka_security_protocol == "PLAINTEXT"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_each_mechanism(mechanism: str) -> None:
    assert client_kwargs(sasl(mechanism=mechanism)) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "custody",
        "sasl_plain_password": PASSWORD,
    }


def test_ssl_checks_the_brokers_certificate() -> None:
    kwargs = client_kwargs(KafkaSecurity(kafka_security_protocol="SSL", kafka_ssl_cafile=CA))
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded

    unchecked = client_kwargs(
        KafkaSecurity(kafka_security_protocol="SSL", kafka_ssl_cafile=CA, kafka_ssl_check_hostname=False)
    )
    assert not unchecked["ssl_context"].check_hostname
    assert unchecked["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # the chain still checked


def test_a_missing_ca_file_fails_at_once() -> None:
    with pytest.raises(FileNotFoundError):
        client_kwargs(KafkaSecurity(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem"))


def test_sasl_ssl_has_both() -> None:
    kwargs = client_kwargs(sasl("SASL_SSL", "SCRAM-SHA-256", kafka_ssl_cafile=CA))
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == ("SCRAM-SHA-256", "custody")
    assert kwargs["sasl_plain_password"] == PASSWORD


def test_incomplete_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_sasl_username"):
        KafkaSecurity(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError):
        KafkaSecurity(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="GSSAPI")
    with pytest.raises(ValidationError):
        KafkaSecurity(kafka_security_protocol="TLS")
    with pytest.raises(ValidationError, match="kafka_ssl_keyfile"):
        KafkaSecurity(kafka_security_protocol="SSL", kafka_ssl_keyfile="/k.pem")


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCOC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MCOC_KAFKA_SASL_USERNAME", "topics-admin")
    monkeypatch.setenv("MCOC_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = TopicSettings()  # from the environment, as `python -m shared.topics` reads it
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("shared.test").info("settings %s %r", settings, settings)
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()), described(settings)]
    shown += [caplog.text]
    for text in shown:
        assert PASSWORD not in text
    assert described(settings) == "SASL_SSL SCRAM-SHA-512 as topics-admin"


@pytest.mark.asyncio(loop_scope="session")
async def test_aiokafka_takes_the_keywords() -> None:
    """The names are aiokafka's: each client is constructed with them (not started) and holds them."""
    for security in (sasl("SASL_SSL", "PLAIN", kafka_ssl_cafile=CA), sasl("SASL_PLAINTEXT", "SCRAM-SHA-256")):
        kwargs = client_kwargs(security)
        producer = AIOKafkaProducer(bootstrap_servers=ENV.kafka_bootstrap, **kwargs)
        consumer = AIOKafkaConsumer(bootstrap_servers=ENV.kafka_bootstrap, **kwargs)
        admin = AIOKafkaAdminClient(bootstrap_servers=ENV.kafka_bootstrap, **kwargs)
        for client in (producer.client, consumer._client, admin._client):
            assert client._security_protocol == security.kafka_security_protocol
            assert client._sasl_mechanism == security.kafka_sasl_mechanism
        await producer.stop()
        await consumer.stop()
        await admin.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_relays_producer_is_safe_and_secured() -> None:
    """acks=all and idempotence (a record acknowledged is on `min.insync.replicas` replicas, a retry not written
    twice), with the security settings the relay was given."""
    producer = make_producer(ENV.kafka_bootstrap, "relay-test", security=sasl())
    assert producer._sender._acks == -1  # all
    assert producer._txn_manager is not None  # idempotence
    assert producer.client._security_protocol == "SASL_PLAINTEXT"
    await producer.stop()

    relay = OutboxRelay(dsn="postgresql://unused", bootstrap_servers=ENV.kafka_bootstrap, service="t", security=sasl())
    made = relay._producer_factory(ENV.kafka_bootstrap, "t-relay", max_request_size=1_000_000)
    assert made.client._sasl_mechanism == "SCRAM-SHA-512" and made._sender._acks == -1
    await made.stop()


def test_security_of_settings() -> None:
    assert security_of(object()) is None  # a settings class without the mixin: PLAINTEXT
    settings = sasl()
    assert security_of(settings) is settings


def _unsecured(path: Path) -> set[str]:
    """The aiokafka clients and project wrappers constructed in `path` without the security settings: a client needs
    `**client_kwargs(...)`, a wrapper its `security=` keyword."""
    missing: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name in CLIENTS:
            ok = any(
                k.arg is None and isinstance(k.value, ast.Call) and getattr(k.value.func, "id", None) == "client_kwargs"
                for k in node.keywords
            )
        elif name in SECURED:
            ok = any(k.arg == SECURED[name] for k in node.keywords)
        else:
            continue
        if not ok:
            missing.add(str(name))
    return missing


def test_no_client_is_constructed_without_the_security_settings() -> None:
    files = sorted((ROOT / "shared").rglob("*.py")) + sorted((ROOT / "services").glob("*/*/**/*.py"))
    missing = {(str(f.relative_to(ROOT)), name) for f in files for name in _unsecured(f)}
    assert missing - NOT_YET == set(), "constructed without the Kafka security settings"
    waiting = {(f, name) for f, name in NOT_YET if (ROOT / f).exists()}
    assert waiting - missing == set(), "secured now: take them out of NOT_YET"


def test_the_source_check_sees_a_bare_client(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "a = aiokafka.AIOKafkaConsumer('t', bootstrap_servers=b, **client_kwargs(s))\n"
        "b = AIOKafkaProducer(bootstrap_servers=b, **other)\n"
        "c = AIOKafkaAdminClient(bootstrap_servers=b)\n"
        "d = EventConsumer(dsn=x, security=s)\n"
        "e = OutboxRelay(dsn=x)\n"
    )
    assert _unsecured(sample) == {"AIOKafkaProducer", "AIOKafkaAdminClient", "OutboxRelay"}


# --- a broker of the test's own with a SASL_PLAINTEXT listener (PLAIN and SCRAM-SHA-256) ----------------------------

KAFKA_LIBS = ROOT / "var" / "kafka" / "libs-4.1.1"
USERS = {"admin": "admin-pw", "custody": "custody-pw"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_broker(protocol: str, mechanisms: list[str], more: str = "") -> Iterator[tuple[str, Path]]:
    """A single KRaft node on free ports in a folder of its own under var/, one listener of `protocol` (SASL_PLAINTEXT
    or SASL_SSL) offering `mechanisms`: the users of PLAIN in the listener's JAAS, of SCRAM given at format time.
    Killed and removed at the end. Yields its bootstrap address and its folder."""
    if not list(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        pytest.fail(f"no Kafka jars in {KAFKA_LIBS}: `deploy/local/infra.sh start kafka` fetches them")
    home = ROOT / "var" / f"kafka-sasl-{uuid.uuid4().hex[:8]}"
    (home / "data").mkdir(parents=True)
    port, controller = _free_port(), _free_port()
    listener = protocol.lower()
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
    jaas = [
        f"listener.name.{listener}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
        f'required username="admin" password="{USERS["admin"]}" {plain_users};'
    ] + [
        f"listener.name.{listener}.{m.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        for m in mechanisms
        if m.startswith("SCRAM")
    ]
    props = home / "server.properties"
    props.write_text(
        f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners={protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners={protocol}://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,{protocol}:{protocol}
inter.broker.listener.name={protocol}
sasl.enabled.mechanisms={",".join(sorted({"PLAIN", *mechanisms}))}
sasl.mechanism.inter.broker.protocol=PLAIN
log.dirs={home / "data"}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""
        + "\n".join(jaas)
        + "\n"
        + more
    )
    java = ["java", "-Xmx384m", "-Xms128m", "-Djava.awt.headless=true", "-cp", f"{KAFKA_LIBS}/*"]
    log = (home / "console.log").open("ab")
    scram = [
        a
        for m in mechanisms
        if m.startswith("SCRAM")
        for u, p in USERS.items()
        for a in ("--add-scram", f"{m}=[name={u},password={p}]")
    ]
    broker: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", "sasl-test-cluster-0001", "-c", str(props), *scram],
            check=True,
            stdout=log,
            stderr=log,
            timeout=120,
        )
        broker = subprocess.Popen([*java, "kafka.Kafka", str(props)], stdout=log, stderr=log)
        deadline = time.monotonic() + 90
        while True:
            if broker.poll() is not None:
                log.flush()
                tail = (home / "console.log").read_text(errors="replace").splitlines()[-40:]
                pytest.fail("the broker of the test exited:\n" + "\n".join(tail))
            assert time.monotonic() < deadline, f"the SASL broker not listening after 90 s; see {home}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", home
    finally:
        if broker is not None:
            broker.kill()  # the process this fixture started, by its handle
            broker.wait(timeout=30)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[str]:
    """SASL_PLAINTEXT with PLAIN and SCRAM-SHA-256."""
    with own_broker("SASL_PLAINTEXT", ["PLAIN", "SCRAM-SHA-256"]) as (bootstrap, _):
        yield bootstrap


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """SASL_SSL with SCRAM-SHA-512, its certificate (for 127.0.0.1) signed by a CA of the test's own; yields its
    bootstrap address and the CA's certificate."""
    certs = tmp_path_factory.mktemp("kafka-tls")

    def openssl(command: str) -> None:
        subprocess.run(["openssl", *command.split()], check=True, cwd=certs, capture_output=True, timeout=60)

    openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=mcoc-test-CA")
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1")
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf"
    )
    # an encrypted PKCS#8 key, as Kafka's PEM keystore reads it (PBES2 keys: not with Java 17)
    openssl("pkcs8 -topk8 -in server.key -out server.p8 -passout pass:key-pw -v1 PBE-SHA1-3DES")
    (certs / "keystore.pem").write_text((certs / "server.p8").read_text() + (certs / "server.pem").read_text())
    tls = f"""ssl.keystore.type=PEM
ssl.keystore.location={certs / "keystore.pem"}
ssl.key.password=key-pw
ssl.truststore.type=PEM
ssl.truststore.location={certs / "ca.pem"}
"""
    with own_broker("SASL_SSL", ["SCRAM-SHA-512"], tls) as (bootstrap, _):
        yield bootstrap, certs / "ca.pem"


def user(name: str, password: str, mechanism: str = "PLAIN") -> KafkaSecurity:
    return KafkaSecurity.model_validate(
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": name,
            "kafka_sasl_password": password,
        }
    )


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_right_credentials_reach_a_sasl_broker(sasl_broker: str, mechanism: str) -> None:
    """The topics' admin client, the relay's producer and a consumer, all through `client_kwargs`."""
    prefix = f"sasl-{mechanism.lower()}."
    admin, custody = user("admin", USERS["admin"], mechanism), user("custody", USERS["custody"], mechanism)
    created = await ensure_topics(sasl_broker, prefix, security=admin)
    assert sorted(created) == sorted(physical(t, prefix) for t in TOPICS)
    topic = physical(CUSTODY_EVENTS, prefix)

    producer = make_producer(sasl_broker, "sasl-relay", security=custody)
    await asyncio.wait_for(producer.start(), 30)
    try:
        await producer.send_and_wait(topic, b"value", key=b"lot-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=sasl_broker, group_id=None, auto_offset_reset="earliest", **client_kwargs(custody)
    )
    await asyncio.wait_for(consumer.start(), 30)
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"lot-1", b"value")


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    "security",
    [
        user("custody", "wrong-pw", "PLAIN"),
        user("custody", "wrong-pw", "SCRAM-SHA-256"),
        user("nobody", USERS["custody"], "SCRAM-SHA-256"),
        None,  # in clear, to a SASL listener
    ],
    ids=["plain-wrong-password", "scram-wrong-password", "scram-unknown-user", "plaintext"],
)
async def test_wrong_credentials_do_not(sasl_broker: str, security: KafkaSecurity | None) -> None:
    """Refused at the handshake (aiokafka: no broker to bootstrap from), while the right ones get through."""
    producer = make_producer(sasl_broker, "sasl-wrong", security=security)
    try:
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(producer.start(), 20)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=sasl_broker, group_id=None, **client_kwargs(security))
    try:
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(consumer.start(), 20)
    finally:
        await consumer.stop()
    assert isinstance(await list_topics(sasl_broker, security=user("admin", USERS["admin"])), set)  # the broker is up


@pytest.mark.asyncio(loop_scope="session")
async def test_sasl_ssl_with_the_brokers_ca(tls_broker: tuple[str, Path]) -> None:
    """TLS checked against the CA given (and the broker's name, 127.0.0.1), SCRAM-SHA-512 inside it; without the CA
    (the system's CAs do not know ours) the handshake fails."""
    bootstrap, ca = tls_broker

    def settings(name: str, password: str, cafile: str | None) -> KafkaSecurity:
        return KafkaSecurity.model_validate(
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": name,
                "kafka_sasl_password": password,
                "kafka_ssl_cafile": cafile,
            }
        )

    prefix = "sasl-ssl."
    created = await ensure_topics(bootstrap, prefix, security=settings("admin", USERS["admin"], str(ca)))
    assert physical(CUSTODY_EVENTS, prefix) in created
    producer = make_producer(bootstrap, "tls-relay", security=settings("custody", USERS["custody"], str(ca)))
    await asyncio.wait_for(producer.start(), 30)
    try:
        await producer.send_and_wait(physical(CUSTODY_EVENTS, prefix), b"over TLS", key=b"lot-2")
    finally:
        await producer.stop()

    for wrong in (settings("custody", USERS["custody"], None), settings("custody", "wrong-pw", str(ca))):
        producer = make_producer(bootstrap, "tls-wrong", security=wrong)
        try:
            with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
                await asyncio.wait_for(producer.start(), 20)
        finally:
            await producer.stop()
