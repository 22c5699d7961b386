"""The outbox relay: committed outbox rows to the broker, and what it knows of the broker's log."""
