"""The harness's own tests use the service fixtures flowport-testing's entry point loads."""
