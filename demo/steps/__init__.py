"""One module per connector: ``step(workdir) -> str`` called inside the demo flow.

A step module may set ``SERVICES = ["s3"]``: the demo starts those through the test harness
and exports their environment variables before the flow runs.
"""
