"""Cross-connector flows: every connector installed, every service from flowport-testing's
fixtures (its pytest11 entry point loads them)."""
