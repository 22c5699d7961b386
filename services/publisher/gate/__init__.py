"""The gate: every input (HTTP, the CMS topic, the service-item lane, a migration) is
validated, sanitised, versioned and written with its event to the outbox here."""
