from django.core.management.base import BaseCommand, CommandError

from mailer import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored account secret with the newest key in "
        "MAILROOM_CREDENTIALS_KEYS (the first). Run it after putting a new key in front; "
        "then the old keys can be removed."
    )

    def handle(self, *args, **options):
        rotated, unreadable = crypto.rotate_all()
        self.stdout.write(f"Re-encrypted {rotated} secret(s) with the newest key.")
        if unreadable:
            raise CommandError(
                f"{unreadable} secret(s) could not be decrypted with any configured key: keep "
                "the key they were written with in MAILROOM_CREDENTIALS_KEYS, or enter those "
                "accounts' passwords again."
            )
