"""Sends the ATR list-change notifications: a background thread follows the store's history (every write of
a Group or Subscription adds a history row, whatever path made it: REST, $member-add/$member-remove,
attribution runs, transactions) and, for each active Subscription whose filter names the changed Group,
POSTs an event notification to its rest-hook endpoint. A Subscription stored with status `requested` gets a
handshake first and becomes `active` (or `error`, with the reason in `Subscription.error`); heartbeats go out
when a heartbeat period is set and nothing else was sent for that long.

Event numbers are derived from the history (the Group's versions written since the Subscription was
created), so they survive restarts. The sender's position in the history is saved in the database after
every pass (``feed_position``, store/sql/feed.py): the next holder of the lease, another instance or the same
one after a restart, goes on from there, so changes written while every instance was stopped are sent once
one starts again. Only on a database where no position was ever saved does the sender start from the newest
row. A sender that dies between a POST and the next save may repeat those notifications (at least once);
two live senders never run at once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ..auth import policy
from ..auth.context import Grant
from ..auth.gated import GatedStore
from ..auth.grant_record import owner_of
from ..fhir.subscription_topic import Spec, spec
from ..net.egress import EgressPolicy, egress_client, refusal
from ..store.sql.feed import ChangeFeed, Lease
from ..store.sql.feeds import Deliveries
from .notification import bundle

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore

log = logging.getLogger("gateway.subscriptions")
LOCK_KEY = 7431001  # PostgreSQL advisory lock of the sending process
LOOKBACK = 500  # history rows re-read behind the cursor: a transaction may commit after a later-numbered one
FEED_NAME = "subscription-notifier"  # its row in feed_position


class Notifier:
    def __init__(self, store: SqlStore, base: str, http: httpx.Client | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, egress: EgressPolicy | None = None, *,
                 opt_out: str) -> None:
        self.store = store
        self.feed = ChangeFeed(store)
        self.deliveries = Deliveries(store)  # the last notification of each Subscription (Data feeds screen)
        self.base = base.rstrip("/")
        # every POST goes through the egress policy: the endpoint is checked again (allow-list, scheme,
        # address) and its name resolved and checked when the connection is opened
        self.egress = egress if egress is not None else EgressPolicy()
        self.http = http or egress_client(self.egress)
        self.interval = interval
        self.clock = clock
        self.cursor: int | None = None
        self._floor = 0  # rows up to here were written before this notifier started: never sent
        self._seen: set[int] = set()
        self._unsaved = False  # a position primed but not yet saved
        self._last_sent: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lease: Lease | None = None  # held while this process is the one that sends (see _lead)
        # each Subscription's owner (the grant it was written under, auth/grant_record.py) and the store gate
        # that decides, at send time, whether that grant may read the Group a notification is about
        self._owners: dict[str, Grant | None] = {}
        self.gated = GatedStore(store, self.base, opt_out=opt_out)  # opt_out: the configured Provider Access list

    # -- thread ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        if getattr(self.store, "url", "") in ("sqlite://", "sqlite:///:memory:"):
            log.warning("no subscription notifications on an in-memory database (one connection for all threads)")
            return
        self.prime()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="subscription-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
        self._release()

    def _lead(self) -> bool:
        """Only one process sends notifications (uvicorn workers, several gateways on one PostgreSQL): the
        holder of a PostgreSQL advisory lock, or of an exclusive lock on a file beside the SQLite database.
        Others check again on every pass and take over when the holder goes away."""
        if self._lease is None:
            self._lease = self.feed.try_lease(LOCK_KEY, "notifier")
        return self._lease is not None

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the thread must keep running; the next tick retries
                log.exception("subscription notifier tick failed")

    def prime(self) -> None:
        """Go on from the position the last sender saved (this process before a restart, or another
        instance). Where none was ever saved, or the saved one lies beyond the history (a database restored
        to an earlier state), start from the newest history row: earlier changes are not notified."""
        head = self.feed.head()
        saved = self.feed.position(FEED_NAME)
        if saved is None or saved[0] > head:
            self.cursor, self._floor, self._seen = head, head, set()
        else:
            self.cursor, state = saved
            self._floor = int(state.get("floor", 0))
            self._seen = {int(p) for p in state.get("seen", [])}
        self._unsaved = True

    def _save(self) -> None:
        """Record the position and the rows handled in the look-back window (the lease holder only)."""
        assert self.cursor is not None
        self.feed.save_position(FEED_NAME, self.cursor, {"floor": self._floor, "seen": sorted(self._seen)})
        self._unsaved = False

    # -- one pass ------------------------------------------------------------------------------------------
    def tick(self) -> int:
        """Handle the history rows written since the last pass and due heartbeats; returns notifications
        sent (handshakes, events and heartbeats)."""
        if not self._lead():
            self.cursor = None  # a later leader starts from the newest row, as at start-up
            return 0
        if self.cursor is None:
            self.prime()
        assert self.cursor is not None
        rows = self.feed.after(self.cursor - LOOKBACK, ("Group", "Subscription"), 2000)
        sent = 0
        subs: list[Spec] | None = None
        for pk, rtype, rid, version in rows:
            if pk in self._seen or pk <= self._floor or pk <= self.cursor - LOOKBACK:
                continue
            self._seen.add(pk)
            if rtype == "Subscription":
                sent += self._maybe_handshake(rid)
                subs = None  # statuses may have changed
                continue
            if subs is None:
                subs = self._subscriptions()
            for sub in subs:
                if sub.status == "active" and sub.group_id == rid and self._owner_reads(sub, rid, version):
                    n = self._events_since_start(sub.id, rid, pk)
                    sent += self._send(sub, "event-notification", n, (n, "Group", rid, version))
        handled = self.cursor, len(self._seen)
        if rows:
            self.cursor = max(self.cursor, rows[-1][0])
            self._seen = {p for p in self._seen if p > self.cursor - LOOKBACK}
        if self._unsaved or handled != (self.cursor, len(self._seen)):
            self._save()
        now = self.clock()
        for sub in subs if subs is not None else self._subscriptions():
            if sub.status == "active" and sub.heartbeat and now - self._last_sent.setdefault(
                    sub.id, now) >= sub.heartbeat and self._owner_reads(sub, sub.group_id, None):
                sent += self._send(sub, "heartbeat", self._events_since_start(sub.id, sub.group_id, None))
        return sent

    def _subscriptions(self) -> list[Spec]:
        out = []
        owners: dict[str, Grant | None] = {}
        for stored in self.store.iter_current("Subscription"):
            if stored.content is not None and not stored.deleted:
                resource = orjson.loads(stored.content)
                s = spec(resource)
                if s is not None:
                    out.append(s)
                    owners[s.id] = owner_of(resource)
        self._owners = owners
        return out

    def _owner_reads(self, sub: Spec, group_id: str, version: int | None) -> bool:
        """Whether the Subscription's owner may read the Group (that version, or the current one) now,
        decided by the store gate as a REST read under the owner's grant would be. A Subscription with no
        recorded owner notifies nobody (fail closed); a refused notification is skipped, not an error."""
        owner = self._owners.get(sub.id)
        if owner is None:
            log.warning("subscription has no recorded owner; nothing is sent", extra={"subscription": sub.id})
            return False
        if not owner.system and policy.confined(owner.scopes, "Group"):
            return False  # patient/ scopes: a list's changes concern other patients (as subscribing, access.py)
        stored = (self.store.read("Group", group_id) if version is None
                  else self.store.vread("Group", group_id, version))
        if stored is None:
            return False
        # a deletion is judged by the version before it, as in a history read
        prior = (lambda: self.store.vread("Group", group_id, stored.version - 1)) if stored.version > 1 else None
        seen = self.gated.gate.visible(owner, stored, prior)
        if seen is None:
            log.info("subscription owner may not read the Group; not sent", extra={"subscription": sub.id})
        return seen is not None

    def _events_since_start(self, sub_id: str, group_id: str, upto_pk: int | None) -> int:
        return self.feed.versions("Group", group_id, self.feed.first("Subscription", sub_id), upto_pk)

    def _maybe_handshake(self, sub_id: str) -> int:
        stored = self.store.read("Subscription", sub_id)
        if stored is None or stored.content is None:
            return 0
        resource = orjson.loads(stored.content)
        sub = spec(resource)
        if sub is None or sub.status != "requested":
            return 0
        self._owners[sub.id] = owner_of(resource)
        if not self._owner_reads(sub, sub.group_id, None):
            self._set_status(resource, stored.version, "error", "the owner of this Subscription may not read "
                             "the Group it names (or none is recorded); nothing is sent")
            return 0
        ok = self._post(sub, bundle(self.base, sub, "handshake", "requested",
                                    self._events_since_start(sub.id, sub.group_id, None)), "handshake")
        self._set_status(resource, stored.version, "active" if ok is None else "error", ok)
        return 1

    def _send(self, sub: Spec, kind: str, events: int, event: tuple[int, str, str, int] | None = None) -> int:
        error = self._post(sub, bundle(self.base, sub, kind, "active", events, event), kind)
        if error is not None:
            stored = self.store.read("Subscription", sub.id)
            if stored is not None and stored.content is not None:
                self._set_status(orjson.loads(stored.content), stored.version, "error", error)
            sub.status = "error"
        return 1

    def _post(self, sub: Spec, body: dict[str, Any], kind: str) -> str | None:
        """POST one notification; None when the endpoint accepted it, else why not. Either way the outcome is
        recorded as the Subscription's last notification (``Subscription/[id]/$notification-status``)."""
        error = self._deliver(sub, body)
        try:
            self.deliveries.note(sub.id, kind, error)
        except Exception:  # noqa: BLE001 - the record is for people looking; sending goes on without it
            log.warning("could not record the notification", extra={"subscription": sub.id})
        return error

    def _deliver(self, sub: Spec, body: dict[str, Any]) -> str | None:
        self._last_sent[sub.id] = self.clock()
        headers = {**sub.headers, "Content-Type": "application/fhir+json"}
        try:
            r = self.http.post(sub.endpoint, content=orjson.dumps(body), headers=headers, timeout=sub.timeout)
        except httpx.HTTPError as exc:
            refused = refusal(exc)
            log.warning("subscription notification failed", extra={"subscription": sub.id, "error": str(exc)})
            if refused is not None:
                return f"channel.endpoint {refused}"
            return f"notification to the endpoint failed: {type(exc).__name__}"
        if r.status_code >= 300:
            log.warning("subscription notification refused", extra={"subscription": sub.id, "status": r.status_code})
            return f"the endpoint answered HTTP {r.status_code}"
        return None

    def _set_status(self, resource: dict[str, Any], version: int, status: str, error: str | None) -> None:
        from ..fhir.errors import PreconditionFailed

        updated = {**resource, "status": status}
        if error:
            updated["error"] = error
        else:
            updated.pop("error", None)
        try:
            with self.store.session() as s:
                s.write(updated, "PUT", expected_version=version)
        except PreconditionFailed:
            pass  # the client changed it meanwhile; its new version is handled on the next pass
