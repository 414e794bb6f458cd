"""Apache Kafka 4.x, single KRaft node (broker + controller), run from Maven jars.

The jars come from ``org.apache.kafka:kafka_2.13`` (plus kafka-tools and the log4j2 SLF4J
binding the tarball ships) via ``mvn dependency:copy-dependencies`` into
``~/.cache/flowport/kafka/<version>/libs``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, ClassVar

from . import versions
from .base import (
    CACHE_DIR,
    Service,
    ServiceError,
    apt_install,
    file_lock,
    free_port,
    port_open,
    render_properties,
    run,
)

REQUIRED_JARS = (
    "kafka_2.13-",
    "kafka-server-",
    "kafka-tools-",
    "log4j-core-",
    "log4j-slf4j",
    "kafka-clients-",
)

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.flowport.harness</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
  </plugin></plugins></build>
</project>
"""

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


def render_pom(kafka_version: str) -> str:
    """The pom whose runtime dependencies are exactly the broker's classpath."""
    deps = [
        ("org.apache.kafka", "kafka_2.13", kafka_version),
        ("org.apache.kafka", "kafka-tools", kafka_version),
        ("org.apache.logging.log4j", "log4j-api", versions.LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", versions.LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", versions.LOG4J_VERSION),
    ]
    lines = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return POM.format(
        kafka=kafka_version, deps=lines, plugin=versions.MAVEN_DEPENDENCY_PLUGIN_VERSION
    )


def render_server_properties(
    port: int, controller_port: int, data_dir: Path, auto_create_topics: bool = False
) -> str:
    """server.properties for one combined broker+controller bound to 127.0.0.1."""
    rf1 = {
        f"{topic}.{key}": 1
        for topic in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic")
        for key in ("replication.factor", "min.isr")
    }
    return render_properties(
        {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": 1,
            "default.replication.factor": 1,
            **rf1,
            "transaction.state.log.num.partitions": 4,
            "offsets.topic.num.partitions": 4,
            "group.initial.rebalance.delay.ms": 0,
            # After SIGKILL the controller refuses the new broker (DUPLICATE_BROKER_REGISTRATION)
            # until the old session expires: keep that short so a crash restart takes seconds.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
            "auto.create.topics.enable": str(auto_create_topics).lower(),
        }
    )


def kafka_libs(version: str) -> Path:
    """Download (once) the jars of Kafka ``version``; return the ``libs`` dir."""
    root = CACHE_DIR / "kafka" / version
    libs = root / "libs"
    with file_lock(f"kafka-{version}"):
        if (root / ".complete").exists():
            return libs
        if not shutil.which("mvn") or not shutil.which("java"):
            apt_install(["maven", "openjdk-17-jre-headless"])
        root.mkdir(parents=True, exist_ok=True)
        (root / "pom.xml").write_text(render_pom(version))
        shutil.rmtree(libs, ignore_errors=True)
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(root / "pom.xml"),
                f"org.apache.maven.plugins:maven-dependency-plugin:"
                f"{versions.MAVEN_DEPENDENCY_PLUGIN_VERSION}:copy-dependencies",
                f"-DoutputDirectory={libs}",
                f"-Dmaven.repo.local={CACHE_DIR / 'm2'}",
                "-DincludeScope=runtime",
            ],
            f"mvn (kafka {version})",
        )
        names = [p.name for p in libs.glob("*.jar")]
        missing = [j for j in REQUIRED_JARS if not any(n.startswith(j) for n in names)]
        if missing:
            raise ServiceError(f"kafka {version} jars incomplete, missing {missing} in {libs}")
        (root / ".complete").touch()
    return libs


class Kafka(Service):
    """Single-node KRaft Kafka; restart keeps both ports and the log dir."""

    name: ClassVar[str] = "kafka"
    kind: ClassVar[str] = "apache-kafka"
    start_timeout: ClassVar[float] = 90.0
    state_fields: ClassVar[tuple[str, ...]] = ("controller_port", "auto_create_topics", "version")

    def __init__(
        self,
        port: int | None = None,
        workdir: str | Path | None = None,
        version: str | None = None,
        auto_create_topics: bool = False,
    ) -> None:
        super().__init__(port, workdir)
        self.version = version or versions.KAFKA_VERSION
        self.auto_create_topics = auto_create_topics
        self.controller_port = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap_servers}"

    @property
    def libs_dir(self) -> Path:
        """Kafka's jars: use with ``java -cp '<libs_dir>/*'`` or ``run_tool``."""
        return CACHE_DIR / "kafka" / self.version / "libs"

    def install(self) -> None:
        kafka_libs(self.version)
        # kcat (librdkafka) is the independent client the Kafka cross-check tests use.
        if shutil.which("kcat") is None:
            apt_install(list(versions.EXTRA_APT_PACKAGES))

    def _java(self, main: str, *args: str, heap: str = "-Xmx512m") -> list[str]:
        assert self.workdir is not None
        return [
            "java",
            "-Xms256m" if main == "kafka.Kafka" else "-Xms32m",
            heap,
            "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile=file:{self.workdir}/log4j2.xml",
            "-cp",
            f"{self.libs_dir}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        assert self.workdir is not None
        if not self.controller_port:
            self.controller_port = free_port()
        (self.workdir / "log4j2.xml").write_text(LOG4J2)
        (self.workdir / "server.properties").write_text(
            render_server_properties(
                self.port, self.controller_port, self.workdir / "data", self.auto_create_topics
            )
        )
        run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(self.workdir / "server.properties"),
                "--ignore-formatted",
            ),
            "kafka storage format",
            timeout=120,
        )

    def command(self) -> list[str]:
        assert self.workdir is not None
        return self._java("kafka.Kafka", str(self.workdir / "server.properties"))

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000
            )
            try:
                admin.describe_cluster()
                admin.list_topics()
            finally:
                admin.close()
            return True
        except Exception as exc:
            self.last_health_error = repr(exc)
            return False

    def run_tool(
        self,
        main_class: str,
        args: list[str],
        input: str | bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[Any]:
        """Run a Kafka CLI class from the jars, e.g.
        ``run_tool("org.apache.kafka.tools.ConsoleProducer", ["--bootstrap-server", ...])``.
        """
        text = not isinstance(input, bytes)
        return subprocess.run(
            self._java(main_class, *args, heap="-Xmx256m"),
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=False,
            env={**os.environ, "KAFKA_HEAP_OPTS": ""},
        )

    def env(self) -> dict[str, str]:
        return {
            "FLOWPORT_KAFKA_BOOTSTRAP": self.bootstrap_servers,
            "FLOWPORT_KAFKA_VERSION": self.version,
            "FLOWPORT_KAFKA_LIBS": str(self.libs_dir),
        }


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with '-', which the storage tool's
    argument parser would read as an option.
    """
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
