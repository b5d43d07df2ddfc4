"""``python -m mailer.smtp``: check an SMTP account or send one message from the shell."""

import sys

from mailer.smtp.cli import main

sys.exit(main())
