"""The few HTML pages of the authorization flow: login, patient picker with consent, errors. Plain HTML,
every value escaped; the OAuth request travels in hidden fields and is validated again on each post."""

from __future__ import annotations

from html import escape

OAUTH_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "launch",
                "code_challenge", "code_challenge_method", "nonce", "resource")

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
          "label{display:block;margin:.8rem 0 .2rem}input,select{font-size:1rem;padding:.4rem;width:100%}"
          "button{font-size:1rem;padding:.5rem 1.2rem;margin:1rem .5rem 0 0}.err{color:#a00}"
          "li{margin:.2rem 0}code{background:#f3f3f3;padding:0 .2rem}")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")


def _hidden(params: dict[str, str]) -> str:
    return "".join(f"<input type=hidden name='{escape(k)}' value='{escape(v)}'>"
                   for k, v in params.items() if k in OAUTH_FIELDS and v is not None)


def login(params: dict[str, str], client_name: str, error: str | None = None) -> str:
    err = f"<p class=err role=alert>{escape(error)}</p>" if error else ""
    return _page("Sign in", f"""<p><strong>{escape(client_name)}</strong> asks to use your health records.</p>
{err}<form method=post action=authorize>{_hidden(params)}<input type=hidden name='_step' value='login'>
<label for=username>User name</label><input id=username name=username autocomplete=username required>
<label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>
<button type=submit id=sign-in>Sign in</button></form>""")


def consent(params: dict[str, str], client_name: str, ticket: str, scopes: list[str],
            patients: list[tuple[str, str]] | None, error: str | None = None) -> str:
    err = f"<p class=err role=alert>{escape(error)}</p>" if error else ""
    picker = ""
    if patients is not None:
        options = "".join(f"<option value='{escape(pid)}'>{escape(label)}</option>" for pid, label in patients)
        picker = (f"<label for=patient>Patient</label><select id=patient name=patient required>{options}</select>")
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    return _page("Allow access?", f"""<p><strong>{escape(client_name)}</strong> asks for:</p><ul>{items}</ul>
{err}<form method=post action=authorize>{_hidden(params)}<input type=hidden name='_step' value='consent'>
<input type=hidden name='ticket' value='{escape(ticket)}'>{picker}
<button type=submit name=decision value=allow id=allow>Allow</button>
<button type=submit name=decision value=deny id=deny>Deny</button></form>""")


def error(message: str) -> str:
    return _page("Authorization request refused", f"<p class=err role=alert>{escape(message)}</p>"
                 "<p>The application's request could not be accepted. Nothing was shared.</p>")


def manage() -> str:
    return _page("Your connected applications", "<p>An application keeps access only while its tokens live. "
                 "To withdraw access now, ask the application to sign out (it revokes its tokens) or contact the "
                 "administrator of this server, who can revoke every token of an application.</p>")
