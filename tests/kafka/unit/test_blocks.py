"""KafkaConnection's entry in Prefect's block catalog: logo, docs link, titles, code example."""

from __future__ import annotations

import ast
import base64
import xml.etree.ElementTree as ET

from flowport.blocks import DOCS_URL, catalog_problems, code_example_source, logo_data_url
from flowport_kafka import KafkaConnection


def test_catalog_entry_is_complete() -> None:
    assert catalog_problems(KafkaConnection) == []
    assert str(KafkaConnection._logo_url) == f"{DOCS_URL}logos/flowport_kafka.svg"
    assert str(KafkaConnection._documentation_url) == f"{DOCS_URL}connectors/kafka/"
    assert "pip install flowport-kafka" in (KafkaConnection.get_description() or "")
    source = code_example_source(KafkaConnection)
    assert 'KafkaConnection.load("events-cluster")' in source
    ast.parse(source)


def test_logo_is_a_valid_svg_data_url() -> None:
    url = logo_data_url("flowport_kafka")
    assert url.startswith("data:image/svg+xml;base64,")
    root = ET.fromstring(base64.b64decode(url.split(",", 1)[1]))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "Kafka" in "".join(root.itertext())


def test_field_titles_are_human() -> None:
    titles = {n: p["title"] for n, p in KafkaConnection.model_json_schema()["properties"].items()}
    assert titles["sasl_mechanism"] == "SASL mechanism"
    assert titles["ssl_cafile"] == "SSL CA file"
    assert titles["client_id"] == "Client ID"
    assert titles["bootstrap_servers"] == "Bootstrap servers"
