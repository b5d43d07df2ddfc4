"""The browser front end: views, forms, templates; delivery state changes go through mailer."""
