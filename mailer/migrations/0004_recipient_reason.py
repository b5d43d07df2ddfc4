"""``Recipient.reason``: the plain-words reason, apart from the server's own words.

Until now a refused recipient's ``text`` held the reason with the server's reply appended
(“… The server said: “550 5.1.1 No such user””). Split it: the reason goes to ``reason``,
the server's text (without the codes, which have their own fields) stays in ``text``."""

import re

from django.db import migrations, models

SAID = " The server said: “"


def _split(apps, schema_editor):
    Recipient = apps.get_model("mailer", "Recipient")
    changed = []
    for r in Recipient.objects.exclude(status="accepted").exclude(text="").iterator():
        reason, said, reply = r.text.partition(SAID)
        words = reply.removesuffix("”") if said else ""
        if r.code:
            words = re.sub(rf"^{r.code}( {re.escape(r.enhanced)})? ?" if r.enhanced else
                           rf"^{r.code} ?", "", words)
        r.reason, r.text = reason, words
        changed.append(r)
        if len(changed) >= 1000:
            Recipient.objects.bulk_update(changed, ["reason", "text"])
            changed = []
    Recipient.objects.bulk_update(changed, ["reason", "text"])


def _join(apps, schema_editor):
    Recipient = apps.get_model("mailer", "Recipient")
    for r in Recipient.objects.exclude(reason="").iterator():
        reply = " ".join(str(p) for p in (r.code, r.enhanced, r.text) if p)
        r.text = f"{r.reason}{SAID}{reply}”" if reply else r.reason
        r.save(update_fields=["text"])


class Migration(migrations.Migration):

    dependencies = [
        ("mailer", "0003_account_validators"),
    ]

    operations = [
        migrations.AddField(
            model_name="recipient",
            name="reason",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(_split, _join),
    ]
