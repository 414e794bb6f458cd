"""Each real service starts, answers its real client, survives SIGKILL with its data, and
leaves no process behind; toxiproxy toxics measurably change a connection. No mocks."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flowport_testing.services import (
    GcsServer,
    Kafka,
    MariaDB,
    Postgres,
    S3Server,
    Toxiproxy,
    base,
)

REPO = Path(__file__).resolve().parents[3]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------- clients


def _pg_connect(dsn: str, **kwargs: object):  # type: ignore[no-untyped-def]
    import psycopg

    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn, autocommit=True, **kwargs)


def _produce(kafka: Kafka, topic: str, value: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    producer.send(topic, value).get(timeout=30)
    producer.close()


def _consume_all(kafka: Kafka, topic: str, expect: int = 1) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=_uid("g"),
        consumer_timeout_ms=20000,
    )
    values = []
    for msg in consumer:
        values.append(msg.value)
        if len(values) >= expect:
            break
    consumer.close()
    return values


def _create_topic(kafka: Kafka, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()


# ---------------------------------------------------------------------------- round trips


def test_postgres_answers_psycopg(postgres: Postgres) -> None:
    with _pg_connect(postgres.dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()
    assert version.startswith("15.")
    assert (user, db) == ("flowport", "flowport")
    assert postgres.sqlalchemy_url.startswith("postgresql+psycopg://")


def test_postgres_rejects_a_wrong_password(postgres: Postgres) -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _pg_connect(postgres.dsn.replace(":flowport@", ":wrong@"))


def test_mariadb_answers_pymysql(mariadb: MariaDB) -> None:
    import pymysql

    conn = pymysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        database=mariadb.database,
    )
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        assert "10.11" in cur.fetchone()[0]
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        cur.execute("SELECT id FROM t")
        assert cur.fetchall() == ((1,),)
        cur.execute("DROP TABLE t")
    conn.close()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(
            host=mariadb.host,
            port=mariadb.port,
            user=mariadb.user,
            password="wrong",
            database=mariadb.database,
        )


def test_kafka_topic_produce_consume(kafka: Kafka) -> None:
    from kafka import KafkaAdminClient

    topic = _uid("t")
    _create_topic(kafka, topic)
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    assert topic in admin.list_topics()
    admin.close()
    _produce(kafka, topic, b"hello")
    assert _consume_all(kafka, topic) == [b"hello"]


def test_kafka_console_tools_run_from_the_jars(kafka: Kafka) -> None:
    topic = _uid("cli")
    _create_topic(kafka, topic)
    produced = kafka.run_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        ["--bootstrap-server", kafka.bootstrap_servers, "--topic", topic],
        input="from-console\n",
    )
    assert produced.returncode == 0, produced.stderr
    assert _consume_all(kafka, topic) == [b"from-console"]


def test_kafka_unknown_topic_is_not_auto_created(kafka: Kafka) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, max_block_ms=3000)
    with pytest.raises(KafkaTimeoutError):
        producer.send(_uid("missing"), b"x").get(timeout=10)
    producer.close()


def test_s3_put_get_and_wrong_secret_rejected(s3_server: S3Server) -> None:
    from botocore.exceptions import ClientError

    s3 = s3_server.client()
    bucket = _uid("b")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"payload")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"payload"
    bad = s3_server.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        bad.get_object(Bucket=bucket, Key="a/b.txt")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_gcs_upload_download_with_emulator_host(
    gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint_url)
    client = storage.Client(credentials=AnonymousCredentials(), project=gcs_server.project)
    bucket = client.create_bucket(_uid("b"))
    bucket.blob("x/y.bin").upload_from_string(b"gcs-payload")
    assert bucket.blob("x/y.bin").download_as_bytes() == b"gcs-payload"
    assert any(f"/b/{bucket.name}/o" in line for line in gcs_server.requests_log())


# ---------------------------------------------------------------------------- crash + restart


@pytest.mark.fault
def test_postgres_row_survives_sigkill(postgres: Postgres) -> None:
    table = _uid("t").replace("-", "_")
    with _pg_connect(postgres.dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (v text)")
        conn.execute(f"INSERT INTO {table} VALUES ('kept')")
    port, pid = postgres.port, postgres.pid
    postgres.kill()
    assert not base.group_alive(pid)
    postgres.restart()
    assert postgres.port == port and postgres.pid != pid
    with _pg_connect(postgres.dsn) as conn:
        assert conn.execute(f"SELECT v FROM {table}").fetchall() == [("kept",)]


@pytest.mark.fault
def test_kafka_message_survives_sigkill(kafka: Kafka) -> None:
    topic = _uid("crash")
    _create_topic(kafka, topic)
    _produce(kafka, topic, b"durable")
    port = kafka.port
    kafka.kill()
    assert not kafka.is_running()
    kafka.restart()
    assert kafka.port == port
    assert _consume_all(kafka, topic) == [b"durable"]


@pytest.mark.fault
def test_s3_object_survives_sigkill(s3_server: S3Server) -> None:
    s3 = s3_server.client()
    bucket = _uid("crash")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    s3_server.kill()
    s3_server.restart()
    assert s3_server.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.fault
def test_paused_s3_server_times_out_then_resumes(s3_server: S3Server) -> None:
    s3_server.pause()
    try:
        assert base.http_status(s3_server.endpoint_url + "/", timeout=1.0) is None
    finally:
        s3_server.resume()
    assert base.http_status(s3_server.endpoint_url + "/") == 403


# ---------------------------------------------------------------------------- toxiproxy


def _round_trips(conn, n: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.fault
def test_latency_toxic_delays_round_trips(toxiproxy: Toxiproxy, postgres: Postgres) -> None:
    proxy = toxiproxy.proxy_for(postgres, name=_uid("pg"))
    try:
        dsn = postgres.dsn.replace(f":{postgres.port}/", f":{proxy.port}/")
        with _pg_connect(dsn) as conn:
            baseline = _round_trips(conn)
            with proxy.latency(200):
                delayed = _round_trips(conn)
            after = _round_trips(conn)
        assert delayed >= baseline + 0.15, (baseline, delayed)
        assert after < delayed / 2, (after, delayed)
    finally:
        proxy.delete()


@pytest.mark.fault
def test_reset_peer_and_disable_cut_the_link(toxiproxy: Toxiproxy, postgres: Postgres) -> None:
    import psycopg

    proxy = toxiproxy.proxy_for(postgres, name=_uid("pg"))
    try:
        dsn = postgres.dsn.replace(f":{postgres.port}/", f":{proxy.port}/")
        with _pg_connect(dsn) as conn:
            conn.execute("SELECT 1")
            with proxy.reset_peer(), pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        proxy.disable()
        with pytest.raises(psycopg.OperationalError):
            _pg_connect(dsn, connect_timeout=3)
        proxy.enable()
        with _pg_connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        proxy.delete()


# ---------------------------------------------------------------------------- teardown


def test_close_leaves_no_process_and_no_temp_dir() -> None:
    pg = Postgres().start()
    pid, workdir = pg.pid, pg.workdir
    assert pid is not None and workdir is not None
    with _pg_connect(pg.dsn):
        pass  # a backend process joins the group
    pg.pause()  # even a stopped server must go away
    pg.close()
    assert not base.group_alive(pid)
    assert base.process_start_time(pid) is None
    assert not workdir.exists()


def test_cli_up_status_env_down(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWPORT_STATE_DIR": str(tmp_path)}

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "flowport_testing", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cli("up", "toxiproxy")
    try:
        state = json.loads((tmp_path / "state.json").read_text())
        pid = state["toxiproxy"]["pid"]
        status = cli("status")
        assert "toxiproxy" in status and " yes" in status
        exports = cli("env")
        assert (
            f"export FLOWPORT_TOXIPROXY_URL=http://127.0.0.1:{state['toxiproxy']['port']}"
            in exports
        )
        assert "toxiproxy" in cli("up", "toxiproxy")  # reused: same pid
        assert json.loads((tmp_path / "state.json").read_text())["toxiproxy"]["pid"] == pid
    finally:
        cli("down")
    assert base.process_start_time(pid) is None
    assert json.loads((tmp_path / "state.json").read_text()) == {}
