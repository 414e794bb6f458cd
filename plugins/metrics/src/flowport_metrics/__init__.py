"""flowport-metrics: Prometheus metrics of what flowport tasks move, and a summary per flow run.

Install it next to flowport and every flowport task is counted; nothing to import::

    pip install flowport-metrics
    FLOWPORT_METRICS_PORT=4202 python my_flow.py   # scrape http://host:4202/metrics

Metrics (labels ``connector``, ``task``): ``flowport_moved_bytes_total``,
``flowport_moved_rows_total``, ``flowport_moved_messages_total``, ``flowport_retries_total``,
``flowport_task_failures_total`` (+ ``error``), ``flowport_task_duration_seconds``
(+ ``outcome``) and ``flowport_tasks_in_progress``. Each flow run gets a markdown artifact
with the same figures per task.
"""

from flowport_metrics.exporter import Endpoint, Exporter, start_server
from flowport_metrics.metrics import Metrics
from flowport_metrics.plugin import MetricsPlugin, plugin
from flowport_metrics.settings import MetricsSettings
from flowport_metrics.summary import Summaries, render

__all__ = [
    "Endpoint",
    "Exporter",
    "Metrics",
    "MetricsPlugin",
    "MetricsSettings",
    "Summaries",
    "plugin",
    "render",
    "start_server",
]
