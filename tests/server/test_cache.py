"""The bounded caches of the hot path: oldest entry out first, in O(1)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from fastapi_kc_m2m.server.cache import TokenCache, bounded_put


class _Unscannable(OrderedDict[int, str]):
    """An ordered dict that fails when iterated: eviction must not step over the entries."""

    def __iter__(self) -> Iterator[int]:
        raise AssertionError("eviction iterated over the entries")


def test_a_full_bounded_dict_drops_its_oldest_entry_without_iterating() -> None:
    entries = _Unscannable()
    for key in range(3):
        bounded_put(entries, key, str(key), 3)
    bounded_put(entries, 3, "3", 3)
    assert list(entries.keys()) == [1, 2, 3]


def test_a_full_token_cache_forgets_the_oldest_token_first() -> None:
    cache: TokenCache[str] = TokenCache(2, lambda: 0.0)
    for digest in (b"a", b"b", b"c"):
        cache.put(digest, digest.decode(), 1.0)
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == (None, "b", "c")
    cache.drop_where(lambda value: value == "b")
    cache.put(b"d", "d", 1.0)
    cache.put(b"e", "e", 1.0)
    assert (len(cache), cache.get(b"c"), cache.get(b"e")) == (2, None, "e")
