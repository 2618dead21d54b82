"""The public test kits' checklists (``../shared/spec/conformance-checklists.md``) as data: each ``- [ ]``
line, the bold group it sits under, and a check that a test module maps every line of its groups to exactly
one of its test functions. Also the TLS handshake probe the TLS lines use."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.conftest import SHARED, require_shared

CHECKLIST = SHARED / "spec" / "conformance-checklists.md"


@dataclass(frozen=True)
class Line:
    section: str  # the "## ..." heading
    group: str  # the "**...**" group inside it
    text: str  # the line without its "- [ ] " box


def checklist_lines() -> list[Line]:
    """Every checklist line of the file, in order (skips with the named reason without ../shared)."""
    require_shared()
    section = group = ""
    out: list[Line] = []
    for raw in CHECKLIST.read_text(encoding="utf-8").splitlines():
        if raw.startswith("## "):
            section, group = raw[3:].strip(), ""
        elif m := re.match(r"\*\*(.+?)\*\*", raw):
            group = m.group(1).strip()
        elif raw.startswith("- [ ] "):
            out.append(Line(section, group, raw[len("- [ ] "):].strip()))
    return out


def smart_line(ln: Line) -> bool:
    """Lines of the SMART App Launch server checklist (tests/conformance/test_smart_app_launch_checklist.py)."""
    return ln.section.startswith("SMART App Launch")


def deqm_line(ln: Line) -> bool:
    """The DEQM additions (tests/conformance/test_deqm_checklist.py)."""
    return ln.group.startswith("DEQM additions")


def bulk_line(ln: Line) -> bool:
    """Lines of the Bulk Data server checklist but the DEQM additions (test_bulk_data_checklist.py)."""
    return ln.section.startswith("Bulk Data") and not deqm_line(ln)


def check_mapping(mapping: dict[str, str], owns: Callable[[Line], bool], namespace: dict[str, Any]) -> None:
    """Every line ``owns`` selects matches exactly one prefix of ``mapping``, every prefix matches exactly one
    such line, and each mapped name is a test function of ``namespace`` (a module's globals)."""
    every = checklist_lines()
    for ln in every:  # the three modules split the file between them: each line belongs to exactly one
        owners = [f.__name__ for f in (smart_line, bulk_line, deqm_line) if f(ln)]
        assert len(owners) == 1, f"checklist line {ln.text!r} belongs to {owners or 'no test module'}"
    lines = [ln for ln in every if owns(ln)]
    assert lines, "no checklist lines selected: has the checklist's layout changed?"
    used: dict[str, list[str]] = {prefix: [] for prefix in mapping}
    for ln in lines:
        hits = [p for p in mapping if ln.text.startswith(p)]
        assert len(hits) == 1, f"checklist line {ln.text!r} ({ln.group}) maps to {len(hits)} tests: {hits}"
        used[hits[0]].append(ln.text)
    for prefix, texts in used.items():
        assert len(texts) == 1, f"mapping prefix {prefix!r} matches {len(texts)} checklist lines"
    names = list(mapping.values())
    assert len(set(names)) == len(names), "two checklist lines map to the same test"
    for name in names:
        assert name.startswith("test_") and callable(namespace.get(name)), f"{name} is not a test in this module"


def handshake(port: int, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion, cafile: str) -> str:
    """Open a TLS connection to 127.0.0.1:port offering only versions minimum..maximum; the negotiated
    version. The client allows every cipher (security level 0) so that a refusal is the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version, ctx.maximum_version = minimum, maximum
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


def assert_tls12_plus_only(port: int, cafile: str) -> None:
    """A TLS 1.2+ handshake succeeds; one offering at most TLS 1.1 (1.0 and 1.1) is refused."""
    assert handshake(port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED, cafile) in ("TLSv1.2", "TLSv1.3")
    assert handshake(port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, cafile) == "TLSv1.2"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        try:
            got = handshake(port, ssl.TLSVersion.TLSv1, old, cafile)
        except (ssl.SSLError, ConnectionError):
            continue
        raise AssertionError(f"the server accepted a {got} handshake")
