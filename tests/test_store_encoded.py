"""Resources encoded for storage before their version is known (gateway/store/encoded.py) and written in bulk
(SqlSession.write_encoded): the stored bytes are exactly what serialising the resource with its meta gives,
whatever meta it came with; unchanged content makes no new version; keys the bulk path assigns never collide
with those of the other write paths."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fhir.errors import FhirError
from gateway.search.index import index_resource
from gateway.store.encoded import content_of, encode, index_of
from gateway.store.sql.store import SqlStore

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
metas = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"source": texts, "versionId": st.just("7"),
                                        "lastUpdated": st.just("2020-01-01T00:00:00Z"),
                                        "profile": st.lists(texts, max_size=2)}),
    # lastUpdated before versionId: the splice must follow the order the keys have
    st.builds(lambda s: {"lastUpdated": "2020-01-01T00:00:00Z", "source": s, "versionId": "3"}, texts),
)


def resource(meta: dict[str, Any] | None, name: str) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": "p1"}
    if meta is not None:
        res["meta"] = meta
    res["name"] = [{"family": name}]
    return res


@settings(max_examples=200, deadline=None)
@given(metas, texts, st.sampled_from(["1", "12"]), st.sampled_from(["2026-11-25T10:00:00.123Z", "2026-01-01T00:00:00Z"]))
def test_the_splice_equals_serialising_with_the_meta(meta: dict[str, Any] | None, name: str, version: str,
                                                       updated: str) -> None:
    res = resource(meta, name)
    expected_meta = dict(meta or {})
    expected_meta["versionId"] = version
    expected_meta["lastUpdated"] = updated
    assert content_of(encode(res), version, updated) == orjson.dumps({**res, "meta": expected_meta})


def test_index_of_indexes_the_resource_as_given() -> None:
    res = resource({"source": "urn:x"}, "Ñúñez")
    assert index_of(encode(res)) == index_resource(res)


def test_a_value_equal_to_a_marker_is_refused() -> None:
    with pytest.raises(FhirError) as err:
        encode(resource(None, "@@gateway-version-id@@"))
    assert err.value.status == 400


def _versions(store: SqlStore, rtype: str, rid: str) -> list[int]:
    entries, _ = store.history(rtype, rid, None, 50, 0)
    return sorted(int(e.stored.version) for e in entries)


def test_bulk_writes_version_and_key_like_the_other_paths(store: SqlStore) -> None:
    with store.session() as tx:  # a resource written on the single-resource path first
        tx.write({"resourceType": "Patient", "id": "single"}, "PUT")
    a = resource({"source": "urn:a"}, "Alpha")
    with store.session() as tx:
        assert tx.write_encoded([encode(a), encode({"resourceType": "Patient", "id": "p2"})]) == ["created", "created"]
    with store.session() as tx:  # same content: left alone; changed content: a new version
        changed = {**a, "name": [{"family": "Beta"}]}
        assert tx.write_encoded([encode(changed), encode({"resourceType": "Patient", "id": "p2"})]) == [
            "updated", "unchanged"]
    with store.session() as tx:  # and the single-resource path again after the bulk one: no key collision
        tx.write({"resourceType": "Patient", "id": "after"}, "PUT")
    assert _versions(store, "Patient", "p1") == [1, 2]
    assert _versions(store, "Patient", "p2") == [1]
    stored = store.read("Patient", "p1")
    assert stored is not None and orjson.loads(stored.content)["name"] == [{"family": "Beta"}]
    assert orjson.loads(stored.content)["meta"] == {"source": "urn:a", "versionId": "2",
                                                    "lastUpdated": stored.last_updated}
    assert store.count("Patient") == 4
