"""A GET on a view that changes something is a 405: links and prefetchers change nothing."""

from tests.webui.urls import post_only_urls


def test_it_answers_405_to_get_on_every_post_only_view(owner_client, account, draft, message):
    for url in post_only_urls(account, draft, message):
        assert owner_client.get(url).status_code == 405, url
