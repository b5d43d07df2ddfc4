"""Function views, one module per area: auth, home, accounts, compose, outbox."""
