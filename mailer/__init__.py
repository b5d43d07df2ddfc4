"""Mailroom's domain: accounts, drafts, the outbox and its delivery (no HTTP here)."""
