"""The teacher's and judge's response cache: a reply is served only to the endpoint that gave it."""

from pathlib import Path

from servers import free_port

from bayling.core.chat_client import ChatSettings, ChatStats, ResponseCache, complete


def test_a_cached_reply_is_not_served_for_another_endpoint(tmp_path: Path):
    """Both endpoints call their model `teacher` (the default name): a cache keyed by model and messages alone
    gave the second endpoint the first one's replies, so switching teachers changed nothing."""
    request = (("user", "Translate 'cat' into French."),)
    first = ChatSettings(base_url="http://127.0.0.1:9/v1", model="teacher", max_retries=0, timeout_s=2.0)
    cache = ResponseCache(tmp_path / "teacher.sqlite")
    from bayling.core.chat_client import request_key, request_payload

    cache.put(request_key(request_payload(first, request), first.base_url), "chat")
    stats = ChatStats()
    assert complete(first, [request], cache, stats) == ["chat"] and stats.cache_hits == 1
    other = ChatSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="teacher", max_retries=0, timeout_s=2.0)
    stats = ChatStats()
    assert complete(other, [request], cache, stats) == [None]  # asked (and nobody answers there), not served from the cache
    assert stats.cache_hits == 0 and stats.failed == 1
