"""Messaging: the MO, outbox and receipt use cases (pure; their SQL is core/store/messaging)."""
