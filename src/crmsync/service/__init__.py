"""Use cases: syncing connectors, and the changes a person makes to customers."""
