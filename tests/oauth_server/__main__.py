"""``python -m tests.oauth_server --port P --setup JSON``: migrate a fresh database, create
the users and the client application the JSON names, then serve until killed (threaded
WSGI on 127.0.0.1). Prints ``READY <introspection token>`` once it answers."""

import argparse
import json
import os
import secrets
import socketserver
import sys
from datetime import timedelta
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


def _setup(spec: dict) -> str:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application

    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model().objects
    for user in spec["users"]:
        users.create_user(user["username"], user["email"], user["password"])
    client = spec["client"]
    Application.objects.create(
        name="Mailroom (tests)",
        client_id=client["id"],
        client_secret=client["secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(client["redirect_uris"]),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=False,
    )
    # The SMTP test server's own credential for /o/introspect/ (a resource server's token).
    resource = Application.objects.create(
        name="SMTP test server",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    token = secrets.token_urlsafe(24)
    AccessToken.objects.create(
        token=token, application=resource, scope="introspection",
        expires=timezone.now() + timedelta(days=1),
    )
    return token


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--setup", required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oauth_server.settings")
    import django

    django.setup()
    token = _setup(json.loads(args.setup))
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", args.port, get_wsgi_application(),
                         server_class=_Threaded, handler_class=_Quiet)
    print(f"READY {token}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
