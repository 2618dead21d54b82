"""The console's HTML: one page shell (skip link, landmarks, navigation), tables with captions and header
scopes, forms with labels, and charts drawn here as inline SVG with a text alternative (the same numbers
stand in a table beside each chart). Every value is escaped; no script runs on any page."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

CSS = """
:root{--fg:#1b1b1b;--muted:#4a4a4a;--line:#8a8a8a;--accent:#0b5cad;--bg:#fff;--soft:#eef3f9;--bad:#9c1c1c;--good:#1d6b2f}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;line-height:1.45}
a{color:var(--accent)}
a:focus,button:focus,input:focus,select:focus,[tabindex]:focus{outline:3px solid #f0a500;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:2}
header{background:#12355b;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center}
header a{color:#fff}
header .brand{font-weight:700;font-size:1.1rem;margin:0}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.25rem 1rem;margin:0;padding:0}
nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
.who{margin-left:auto;display:flex;gap:.75rem;align-items:center;flex-wrap:wrap}
.who button{background:#fff;color:#12355b;border:0}
main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.25rem;margin:1.6rem 0 .6rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
form.filters{display:flex;flex-wrap:wrap;gap:.75rem 1rem;align-items:flex-end;background:var(--soft);padding:.75rem;border-radius:4px}
label{display:block;font-weight:600;font-size:.95rem}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:3px;max-width:100%}
button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.danger{background:var(--bad);border-color:var(--bad)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4rem 0 1rem;min-width:50%}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border:1px solid #c4c4c4;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:var(--soft)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:var(--muted);font-size:.95rem}
.banner{border-left:5px solid var(--accent);background:var(--soft);padding:.6rem .8rem;margin:.5rem 0 1rem}
.error{border-left:5px solid var(--bad);background:#fbeaea;padding:.6rem .8rem;margin:.5rem 0 1rem}
.ok{border-left:5px solid var(--good);background:#e8f4ea;padding:.6rem .8rem;margin:.5rem 0 1rem}
.cards{display:flex;flex-wrap:wrap;gap:1rem}
.card{border:1px solid #c4c4c4;border-radius:4px;padding:.6rem .8rem;flex:1 1 20rem;max-width:100%}
.card h3{margin-top:0}
svg{max-width:100%;height:auto}
.inline{display:inline}
.wrap{overflow-wrap:anywhere;word-break:break-word}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0 1rem}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
"""


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def link(path: str, **params: Any) -> str:
    q = urlencode([(k, v) for k, v in params.items() if v not in (None, "")])
    return f"{path}?{q}" if q else path


NAV = (("dashboard", "/console/", "Measures"), ("worklist", "/console/worklist", "Gap worklist"),
       ("attribution", "/console/attribution", "Attribution lists"), ("feeds", "/console/feeds", "Data feeds"))


def page(title: str, body: str, *, current: str, user: str | None, csrf: str | None, auth_on: bool) -> str:
    items = "".join(f"<li><a href='{href}'{' aria-current=page' if key == current else ''}>{e(label)}</a></li>"
                    for key, href, label in NAV)
    if auth_on and user is not None:
        who = (f"<div class=who><span>Signed in as <strong>{e(user)}</strong></span>"
               f"<form method=post action='/console/logout' class=inline><input type=hidden name=csrf value='{e(csrf)}'>"
               "<button type=submit>Sign out</button></form></div>")
    else:
        who = "<div class=who><span>Authorization is off: no sign-in</span></div>" if not auth_on else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)} · Gateway console</title>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            "<link rel=stylesheet href='/console/console.css'></head><body>"
            "<a class=skip href='#main'>Skip to content</a>"
            f"<header><p class=brand>Gateway console</p><nav aria-label=Console><ul>{items}</ul></nav>{who}</header>"
            f"<main id=main tabindex=-1><h1>{e(title)}</h1>{body}</main></body></html>")


def message(text: str | None, kind: str = "ok") -> str:
    if not text:
        return ""
    role = "alert" if kind == "error" else "status"
    return f"<div class={kind} role={role}>{e(text)}</div>"


def select(name: str, label: str, options: list[tuple[str, str]], chosen: str | None) -> str:
    opts = "".join(f"<option value='{e(v)}'{' selected' if v == (chosen or '') else ''}>{e(t)}</option>"
                   for v, t in options)
    return f"<div><label for='{name}'>{e(label)}</label><select id='{name}' name='{name}'>{opts}</select></div>"


def table(caption: str, head: list[str], rows: list[list[str]], numeric: set[int] | None = None,
          table_id: str | None = None) -> str:
    """A table in a keyboard-scrollable region; ``rows`` hold HTML already escaped; ``numeric`` columns are
    right-aligned."""
    numeric = numeric or set()
    ths = "".join(f"<th scope=col{' class=num' if i in numeric else ''}>{e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(
        (f"<th scope=row>{c}</th>" if i == 0 else f"<td{' class=num' if i in numeric else ''}>{c}</td>")
        for i, c in enumerate(r)) + "</tr>" for r in rows)
    if not rows:
        body = f"<tr><td colspan={len(head)}>None</td></tr>"
    tid = f" id='{e(table_id)}'" if table_id else ""
    return (f"<div class=scroll role=region aria-label='{e(caption)}' tabindex=0>"
            f"<table{tid}><caption>{e(caption)}</caption><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table></div>")


def pct(score: float | None) -> str:
    return "–" if score is None else f"{score * 100:.1f} %"


# -- charts --------------------------------------------------------------------------------------------------
def line_chart(title: str, points: list[tuple[str, float | None]], lower_better: bool = False) -> str:
    """A rate over periods (0-100 %), with the periods on the x axis; a missing score is a gap in the line."""
    w, h, left, right, top, bottom = 360, 170, 44, 30, 12, 34
    n = max(1, len(points))
    step = (w - left - right) / max(1, n - 1) if n > 1 else 0

    def x(i: int) -> float:
        return left + i * step if n > 1 else (w - left - right) / 2 + left

    def y(v: float) -> float:
        return top + (1 - v) * (h - top - bottom)

    grid = "".join(f"<line x1='{left}' x2='{w - right}' y1='{y(v):.1f}' y2='{y(v):.1f}' stroke='#d0d0d0'/>"
                   f"<text x='{left - 6}' y='{y(v) + 4:.1f}' text-anchor='end' font-size='11' fill='#333'>"
                   f"{int(v * 100)}%</text>" for v in (0, 0.5, 1))
    labels = "".join(f"<text x='{x(i):.1f}' y='{h - 12}' text-anchor='middle' font-size='11' fill='#333'>"
                     f"{e(label)}</text>" for i, (label, _) in enumerate(points))
    segs: list[list[str]] = [[]]
    dots = ""
    for i, (label, v) in enumerate(points):
        if v is None:
            segs.append([])
            continue
        segs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        dots += (f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='4' fill='#0b5cad'><title>{e(label)}: {pct(v)}"
                 "</title></circle>")
    lines = "".join(f"<polyline points='{' '.join(s)}' fill='none' stroke='#0b5cad' stroke-width='2.5'/>"
                    for s in segs if len(s) > 1)
    desc = ", ".join(f"{label} {pct(v)}" for label, v in points)
    note = " (lower is better)" if lower_better else ""
    return (f"<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' aria-label='{e(title)}{note}: {e(desc)}'>"
            f"{grid}{labels}{lines}{dots}</svg>")


def bar_chart(title: str, bars: list[tuple[str, float | None]]) -> str:
    """Horizontal bars of rates (0-100 %), one per label."""
    row, w, left = 26, 420, 170
    h = row * max(1, len(bars)) + 8
    parts = []
    for i, (label, v) in enumerate(bars):
        yy = 4 + i * row
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(f"<text x='{left - 6}' y='{yy + 16}' text-anchor='end' font-size='12' fill='#222'>{e(short)}</text>")
        if v is not None:
            bw = max(1.0, v * (w - left - 60))
            parts.append(f"<rect x='{left}' y='{yy + 3}' width='{bw:.1f}' height='{row - 8}' fill='#0b5cad'>"
                         f"<title>{e(label)}: {pct(v)}</title></rect>"
                         f"<text x='{left + bw + 5:.1f}' y='{yy + 16}' font-size='12' fill='#222'>{pct(v)}</text>")
        else:
            parts.append(f"<text x='{left + 4}' y='{yy + 16}' font-size='12' fill='#333'>no denominator</text>")
    desc = ", ".join(f"{label} {pct(v)}" for label, v in bars)
    return (f"<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' aria-label='{e(title)}: {e(desc)}'>"
            f"{''.join(parts)}</svg>")
