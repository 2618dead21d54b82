"""The egress policy's URL and address rules (issue 13, defect 8): the tricky spellings an attacker uses to
point the gateway's outbound calls inwards are refused, allow-list entries match hosts exactly and paths on
segment boundaries, and configuration opens only what it names. Property-based where the space is large."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.net.egress import EgressPolicy, EgressRefused, address_class, parse_url

STRICT = EgressPolicy()
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every IPv4 range outbound calls must not reach by default, with the class the policy gives it
INTERNAL_V4 = [("127.0.0.0/8", "loopback"), ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"),
               ("192.168.0.0/16", "private"), ("169.254.0.0/16", "link-local"), ("0.0.0.0/8", "reserved"),
               ("100.64.0.0/10", "reserved"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved")]
INTERNAL_V6 = [("::1/128", "loopback"), ("fe80::/10", "link-local"), ("fc00::/7", "unique-local"),
               ("ff00::/8", "multicast"), ("2001:db8::/32", "reserved")]


def _refused(policy: EgressPolicy, url: str) -> str:
    with pytest.raises(EgressRefused) as info:
        policy.check_url(url)
    return str(info.value)


@st.composite
def internal_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net, _ = draw(st.sampled_from(INTERNAL_V4))
    network = ipaddress.IPv4Network(net)
    return network[draw(st.integers(0, network.num_addresses - 1))]


def spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """Host spellings that resolvers or URL parsers have read as ``ip``."""
    n = int(ip)
    a, b, c, d = ip.packed
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    return [str(ip), f"{ip}.", str(n), hex(n), hex(n).upper().replace("X", "x"),
            ".".join(f"0{o:o}" for o in ip.packed), ".".join(hex(o) for o in ip.packed),
            f"{a}.{(b << 16) | (c << 8) | d}", f"{a}.{b}.{(c << 8) | d}",
            str(ip).translate(str.maketrans("0123456789.", "０１２３４５６７８９．")),
            f"[{mapped}]", f"[{mapped.exploded}]", f"[::ffff:{(n >> 16):x}:{n & 0xFFFF:x}]",
            f"[64:ff9b::{ip}]", f"[2002:{a:02x}{b:02x}:{c:02x}{d:02x}::1]"]


@PROPS
@given(ip=internal_v4(), port=st.one_of(st.none(), st.integers(1, 65535)),
       scheme=st.sampled_from(["https", "HTTPS", "http"]))
def test_internal_ipv4_addresses_are_refused_in_every_spelling(ip: ipaddress.IPv4Address, port: int | None,
                                                               scheme: str) -> None:
    suffix = f":{port}" if port else ""
    for host in spellings(ip):
        _refused(STRICT, f"{scheme}://{host}{suffix}/hook")
        # the same with an allowance for http: the address rule holds on its own
        _refused(EgressPolicy(allow_http=True), f"{scheme}://{host}{suffix}/hook")


@PROPS
@given(data=st.data())
def test_internal_ipv6_addresses_are_refused(data: st.DataObject) -> None:
    net, cls = data.draw(st.sampled_from(INTERNAL_V6))
    network = ipaddress.IPv6Network(net)
    ip = network[data.draw(st.integers(0, network.num_addresses - 1))]
    assert address_class(ip) == cls
    for text in (ip.compressed, ip.exploded, ip.compressed.upper()):
        assert cls in _refused(STRICT, f"https://[{text}]:8443/hook")


@PROPS
@given(ip=internal_v4(), allowed=st.sampled_from(["partner.example.org", "8.8.8.8", "hooks.partner.example"]))
def test_userinfo_never_passes(ip: ipaddress.IPv4Address, allowed: str) -> None:
    """`https://partner@169.254.169.254/` names the internal host; a prefix allow-list let it through."""
    policy = EgressPolicy().restricted_to(f"https://{allowed}/")
    for url in (f"https://{allowed}@{ip}/", f"https://{allowed}:443@{ip}/", f"https://user:pw@{allowed}/",
                f"https://{allowed}%40{ip}/", f"https://{allowed}\\@{ip}/", f"https://{ip}#@{allowed}/"):
        _refused(policy, url)


@PROPS
@given(label=st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
       path=st.lists(st.from_regex(r"[A-Za-z0-9_~-]{1,12}", fullmatch=True), max_size=4))
def test_allow_list_compares_hosts_exactly(label: str, path: list[str]) -> None:
    policy = EgressPolicy().restricted_to("https://partner.example.org/hooks/")
    tail = "/".join(path)
    assert policy.check_url(f"https://partner.example.org/hooks/{tail}").host == "partner.example.org"
    assert policy.check_url(f"https://PARTNER.Example.org./hooks/{tail}").host == "partner.example.org"
    for url in (f"https://partner.example.org.{label}.example/hooks/{tail}",
                f"https://{label}partner.example.org/hooks/{tail}",
                f"https://{label}.partner.example.org/hooks/{tail}",
                f"https://partner.example.org:8443/hooks/{tail}",
                f"http://partner.example.org/hooks/{tail}",
                f"https://partner.example.org/hooks{label}/{tail}",
                f"https://partner.example.org/{label}/hooks/{tail}",
                f"https://partner.example.org/hooks/../{label}",
                f"https://partner.example.org/hooks/%2e%2e/{label}",
                f"https://partner.example.org/hooks%2f{label}"):
        assert "allow-list" in _refused(policy, url) or "dot segments" in _refused(policy, url), url


@PROPS
@given(n=st.integers(0, 2**32 - 1))
def test_public_ipv4_literals_pass_and_others_do_not(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    if address_class(ip) is None:
        assert STRICT.check_url(f"https://{ip}/hook").ip == ip
    else:
        _refused(STRICT, f"https://{ip}/hook")
    _refused(STRICT, f"https://{n}/hook")  # a bare number is never taken for an address


@pytest.mark.parametrize("url, why", [
    ("https://partner.example.org@169.254.169.254/latest/meta-data", "userinfo"),
    ("http://localhost@evil.example/jwks", "userinfo"),
    ("https://localhost/hook", "loopback"),
    ("https://LOCALHOST./hook", "loopback"),
    ("https://api.localhost/hook", "loopback"),
    ("https://ｌｏｃａｌｈｏｓｔ/hook", "loopback"),
    ("http://2130706433/", "ambiguous"),
    ("https://0x7f.0.0.1/", "ambiguous"),
    ("https://127.000.000.001/", "ambiguous"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://::1/", "brackets"),
    ("https://[::1/", "valid URL"),
    ("https://example.org:0/", "port"),
    ("https://example.org:65536/", "port"),
    ("https://example.org:+443/", "port"),
    ("https://example.org:/", "port"),
    ("https://exa mple.org/", "spaces"),
    ("https://example.org/\r\nHost: x", "control"),
    ("https://example.org/#frag", "fragment"),
    ("https://a..example.org/", "domain"),
    ("https://-bad-.example.org/", "domain"),
    ("https://ex%61mple.org/", "percent"),
    ("ftp://example.org/", "https"),
    ("//example.org/hook", "https"),
    ("https:///hook", "no host"),
    ("http://example.org/hook", "https"),
    ("https://[::]/", "unspecified"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
])
def test_tricky_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    assert why in _refused(STRICT, url)


def test_idna_names_are_normalised() -> None:
    assert STRICT.check_url("https://Bücher.Example/x").host == "xn--bcher-kva.example"
    assert STRICT.check_url("https://xn--bcher-kva.example./x").host == "xn--bcher-kva.example"
    policy = EgressPolicy().restricted_to("https://bücher.example/hooks")
    assert policy.check_url("https://XN--BCHER-KVA.example/hooks/a").host == "xn--bcher-kva.example"


def test_configuration_opens_only_what_it_names() -> None:
    loop = EgressPolicy.configure("loopback", allow_http=False)
    assert loop.check_url("https://127.0.0.1:8443/x").ip == ipaddress.IPv4Address("127.0.0.1")
    assert loop.check_url("https://[::ffff:127.0.0.1]/x").ip is not None
    assert loop.check_url("https://localhost/x").host == "localhost"
    assert "private" in _refused(loop, "https://10.0.0.1/x")
    assert "https" in _refused(loop, "http://127.0.0.1/x")
    net = EgressPolicy.configure("10.1.0.0/16, fd00:1::/32")
    assert net.check_url("https://10.1.2.3/").ip is not None
    assert net.check_url("https://[fd00:1::5]/").ip is not None
    assert "private" in _refused(net, "https://10.2.0.1/")
    wide = EgressPolicy.configure("0.0.0.0/0,::/0,loopback,private,link-local,unique-local,reserved",
                                  allow_http=True)
    assert "unspecified" in _refused(wide, "http://0.0.0.0/")
    assert "multicast" in _refused(wide, "http://224.0.0.1/")
    http_entry = EgressPolicy.configure("loopback", allowed="http://127.0.0.1:9000/hooks")
    assert http_entry.check_url("http://127.0.0.1:9000/hooks/a").port == 9000
    assert "allow-list" in _refused(http_entry, "http://127.0.0.1:9001/hooks/a")
    for bad in ("everything", "10.0.0.0/33", "multicast", "unspecified"):
        with pytest.raises(ValueError):
            EgressPolicy.configure(bad)
    with pytest.raises(ValueError, match="allow-list entry"):
        EgressPolicy.configure("", allowed="https://user@partner.example.org/")


@PROPS
@given(internal=internal_v4(), public=st.integers(11 << 24, (99 << 24) - 1))  # 11.0.0.0-98.255.255.255
def test_a_name_is_refused_when_any_address_it_resolves_to_is_internal(internal: ipaddress.IPv4Address,
                                                                       public: int) -> None:
    ip = ipaddress.IPv4Address(public)
    assume(address_class(ip) is None)
    policy = EgressPolicy().with_resolver(lambda host, port: [str(ip), str(internal)])
    with pytest.raises(EgressRefused, match="resolves to a non-public address"):
        policy.resolve_checked("hooks.partner.example", 443)
    assert EgressPolicy().with_resolver(lambda host, port: [str(ip)]).resolve_checked("h.example", 443) == [str(ip)]


def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    """The system resolver's answer for `localhost` is checked like any other name's."""
    with pytest.raises(EgressRefused, match="loopback"):
        STRICT.resolve_checked("localhost", 443)
    assert EgressPolicy.configure("loopback").resolve_checked("localhost", 443)


def test_parse_url_keeps_path_and_port() -> None:
    t = parse_url("https://partner.example.org:8443/a/b?x=1")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "partner.example.org", 8443, "/a/b")
    assert parse_url("https://[2001:4860::8888]/").label() == "https://[2001:4860::8888]:443/"
