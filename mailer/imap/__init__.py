"""An account's IMAP side, through imapclient (the SMTP client stays Mailroom's own):

- ``session``: a logged-in IMAP session whose connection passes the destination policy
  after DNS and whose TLS is verified as the account's SMTP is; what the server offers
  (capabilities, folders, the Sent folder); APPEND made exactly-once by a SEARCH first;
- ``sentcopy``: the copy of each accepted message in the Sent folder, its state and its
  retries, never touching delivery state.

Only workers (and commands) talk to IMAP servers.
"""
