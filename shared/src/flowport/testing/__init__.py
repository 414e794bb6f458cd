"""Contract test suites that every connector inherits (needs pytest: ``flowport[testing]``)."""

from flowport.testing.store_contract import ObjectStoreContract

__all__ = ["ObjectStoreContract"]
