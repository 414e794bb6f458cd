"""Fast tests of the harness plumbing: no service is started."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from flowport_testing.services import (
    SERVICES,
    Kafka,
    Postgres,
    ServiceError,
    _names,
    base,
    kafka,
    versions,
)


def test_free_port_is_bindable_on_loopback() -> None:
    port = base.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert not base.port_open("127.0.0.1", port)


def test_render_properties_keeps_order() -> None:
    assert base.render_properties({"b": 1, "a": "x"}) == "b=1\na=x\n"


def test_kafka_server_properties_single_node_loopback(tmp_path: Path) -> None:
    text = kafka.render_server_properties(9092, 9093, tmp_path, auto_create_topics=False)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path)
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert props[f"{key}.replication.factor"] == "1"
        assert props[f"{key}.min.isr"] == "1"


def test_kafka_pom_pins_versions() -> None:
    pom = kafka.render_pom("4.0.0")
    assert "<artifactId>kafka_2.13</artifactId><version>4.0.0</version>" in pom
    assert "<packaging>pom</packaging>" in pom
    assert f"<version>{versions.MAVEN_DEPENDENCY_PLUGIN_VERSION}</version>" in pom
    assert "log4j-slf4j-impl" in pom


def test_state_file_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "RUN_DIR", tmp_path)
    monkeypatch.setattr(base, "STATE_FILE", tmp_path / "state.json")
    svc = Kafka(port=1234, workdir=tmp_path / "k", version="4.0.0")
    svc.controller_port = 1235
    svc.pid = os.getpid()
    svc._start_time = base.process_start_time(os.getpid())
    svc.persist = True
    svc._record()
    again = Kafka.from_state(base.read_state()["kafka"])
    assert (again.port, again.controller_port, again.version) == (1234, 1235, "4.0.0")
    assert again.workdir == tmp_path / "k" and again.pid == os.getpid()
    assert again.is_running()  # our own PID, same start time
    again._start_time = 1  # a reused PID with another start time is not "our" service
    assert not again.is_running()


def test_dsn_and_sqlalchemy_urls() -> None:
    pg = Postgres(port=5999)
    assert pg.dsn == "postgresql://flowport:flowport@127.0.0.1:5999/flowport"
    assert pg.sqlalchemy_url.startswith("postgresql+psycopg://flowport:flowport@")
    assert pg.env()["FLOWPORT_PG_URL"] == pg.dsn


def test_names_all_and_unknown() -> None:
    assert _names("all") == list(SERVICES)
    with pytest.raises(ServiceError, match="unknown service"):
        _names(["nosuch"])


def test_tail_and_start_time(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert base.tail(log, 3) == "97\n98\n99"
    assert base.tail(tmp_path / "missing") == ""
    assert base.process_start_time(os.getpid()) is not None
    assert base.group_alive(os.getpgid(0))


def test_kafka_version_env_override() -> None:
    import subprocess
    import sys

    code = (
        "from flowport_testing import Kafka; print(Kafka().version, Kafka().libs_dir.parent.name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "FLOWPORT_KAFKA_VERSION": "4.0.0"},
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["4.0.0", "4.0.0"]


def test_kafka_cluster_id_never_looks_like_an_option() -> None:
    ids = {kafka._cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
