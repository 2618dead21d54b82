"""The HTML pages of the authorization flow: sign-in, consent (with the patient picker), errors, and the
"apps you have authorized" page. Plain server-rendered HTML without scripts, every value escaped; the OAuth
request travels in hidden fields and is validated again on each post. The deployment's organization name and
logo head every page (``GATEWAY_ORG_NAME``, ``GATEWAY_ORG_LOGO``); scopes are described in plain words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

from ..operations import GATEWAY_SCOPES
from .scopes import ScopeSet

OAUTH_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "launch",
                "code_challenge", "code_challenge_method", "nonce", "resource")

# colours checked for WCAG 2.1 AA contrast on white (text #1f2933 15:1, links and buttons #0b5394 7.5:1,
# errors #a30000 8.4:1); sizes in rem so the pages reflow at 200 % zoom
_STYLE = (
    "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;font-size:1rem;line-height:1.5;margin:0;"
    "color:#1f2933;background:#fff}header{border-bottom:1px solid #cbd2d9;padding:.75rem 1rem;display:flex;"
    "gap:.75rem;align-items:center;flex-wrap:wrap}header img{max-height:2.5rem;max-width:10rem}"
    ".org{font-weight:600;font-size:1.1rem}main{max-width:40rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}"
    "label{display:block;margin:.8rem 0 .2rem;font-weight:600}input,select{font-size:1rem;padding:.45rem;"
    "width:100%;border:1px solid #52606d;border-radius:.25rem}input[type=radio]{width:auto;margin-right:.5rem}"
    "button{font-size:1rem;padding:.55rem 1.2rem;margin:1rem .5rem 0 0;border-radius:.25rem;cursor:pointer;"
    "border:2px solid #0b5394;background:#0b5394;color:#fff}button.secondary{background:#fff;color:#0b5394}"
    ":focus-visible{outline:3px solid #e8a317;outline-offset:2px}.err{color:#a30000;font-weight:600}"
    "ul.scopes li{margin:.3rem 0}.patient{border:1px solid #cbd2d9;border-radius:.25rem;padding:.6rem .8rem;"
    "background:#f5f7fa}fieldset{border:1px solid #cbd2d9;border-radius:.25rem;margin:1rem 0;padding:.5rem 1rem}"
    "legend{font-weight:600;padding:0 .3rem}.choice{display:flex;align-items:flex-start;margin:.35rem 0}"
    ".choice label{font-weight:400;margin:0}.row{display:flex;gap:.75rem;flex-wrap:wrap}.row>div{flex:1 1 10rem}"
    ".muted{color:#52606d}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;"
    "border-bottom:1px solid #cbd2d9;vertical-align:top}a{color:#0b5394}"
)
PICKER_PAGE_SIZE = 20

# plain names of common resource types (anything else: its type name split into words)
_PLAIN = {
    "*": "health records (all kinds)",
    "Patient": "demographics (name, birth date, contact details)",
    "Observation": "observations (test results, vital signs)",
    "Condition": "conditions and diagnoses",
    "Procedure": "procedures (tests and treatments done)",
    "MedicationRequest": "prescriptions",
    "MedicationDispense": "dispensed medicines",
    "MedicationStatement": "medicines taken",
    "Immunization": "immunizations",
    "AllergyIntolerance": "allergies",
    "Encounter": "visits and stays",
    "Coverage": "insurance coverage",
    "ExplanationOfBenefit": "claims and what insurers paid",
    "Claim": "claims",
    "Measure": "quality measure definitions",
    "MeasureReport": "quality measure reports",
    "DiagnosticReport": "diagnostic reports",
    "DocumentReference": "documents",
    "Practitioner": "clinicians' details",
    "Organization": "organizations' details",
    "Group": "patient lists",
}
_ACCESS = (("r", "see"), ("s", "search"), ("c", "add"), ("u", "change"), ("d", "delete"))
_OTHER = {
    "openid": "Know who you are",
    "fhirUser": "Know who you are",
    "profile": "Know who you are",
    "launch": "Open with the patient chosen in your health record system",
    "launch/patient": "Know which patient was chosen",
    "launch/encounter": "Know which visit was chosen",
    "offline_access": "Keep this access after you close the app, until you withdraw it",
    "online_access": "Keep this access while you are using the app",
    **GATEWAY_SCOPES,
}


@dataclass
class Branding:
    """The deployment's name and logo (``logo_url`` None: no logo)."""
    name: str = "FHIR VBC Gateway"
    logo_url: str | None = None


@dataclass
class Picker:
    """One page of the patient picker: the search as typed, the matches on this page (id, label), where
    the page starts and how many patients match in total."""
    name: str = ""
    birthdate: str = ""
    identifier: str = ""
    matches: list[tuple[str, str]] = field(default_factory=list)
    offset: int = 0
    total: int = 0
    size: int = PICKER_PAGE_SIZE
    error: str | None = None  # why the search could not run (e.g. a birth date that is no date)

    @property
    def last(self) -> int:
        """The (1-based) position of this page's last match: the next page starts there."""
        return min(self.offset + len(self.matches), self.total)

    @property
    def previous(self) -> int | None:
        """Where the previous page starts, or None on the first page."""
        return max(0, self.offset - self.size) if self.offset > 0 else None

    @property
    def following(self) -> int | None:
        """Where the next page starts, or None on the last page."""
        return self.last if self.last < self.total else None

    @property
    def count_text(self) -> str:
        """What the page shows, said to a screen reader as a status."""
        return (f"Showing {self.offset + 1} to {self.last} of {self.total} patients" if self.total
                else "No patient matches this search")


def _words(rtype: str) -> str:
    return _PLAIN.get(rtype) or re.sub(r"(?<!^)(?=[A-Z])", " ", rtype).lower() + " records"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_scopes(scope: str | None, clinician: bool | None = None) -> list[str]:
    """The requested scopes as plain sentences, one per resource type and level (what may be done: see,
    search, add, change, delete), then the other permissions (identity, launch context, lasting access).
    ``clinician`` chooses the wording: "this patient" for patient-level scopes, "patients you can see"
    for user-level ones, "your" for a patient (None before sign-in: neutral)."""
    parsed = ScopeSet.parse(scope)
    out: list[str] = []
    seen: set[str] = set()
    for s in parsed.resource:
        verbs = [word for letter, word in _ACCESS if letter in s.perms]
        if not verbs:
            continue
        whose, suffix = "the patient's ", ""
        if clinician is False:
            whose = "your "
        elif s.level == "user":
            whose, suffix = "", " of any patient you may see"
        elif s.level == "system":
            whose, suffix = "", " of every patient"
        line = f"{_join(verbs).capitalize()} {whose}{_words(s.rtype)}{suffix}"
        if s.query:
            line += " (only where " + ", ".join(f"{k} is {v}" for k, v in s.query) + ")"
        if line not in seen:
            seen.add(line)
            out.append(line)
    for token in sorted(parsed.other):
        text = _OTHER.get(token)
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _page(title: str, body: str, brand: Branding) -> str:
    logo = (f"<img src='{escape(brand.logo_url)}' alt='{escape(brand.name)} logo'>" if brand.logo_url else "")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} - "
            f"{escape(brand.name)}</title><meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<style>{_STYLE}</style></head><body><header>{logo}<span class=org>{escape(brand.name)}</span>"
            f"</header><main><h1>{escape(title)}</h1>{body}</main></body></html>")


def page(title: str, body: str, brand: Branding) -> str:
    """A whole page in the sign-in pages' look (header with the organization, one main landmark); ``body``
    is trusted HTML the caller built with every value escaped."""
    return _page(title, body, brand)


def _hidden(params: dict[str, str]) -> str:
    return "".join(f"<input type=hidden name='{escape(k)}' value='{escape(v)}'>"
                   for k, v in params.items() if k in OAUTH_FIELDS and v is not None)


def _error(error: str | None) -> str:
    return f"<p class=err role=alert>{escape(error)}</p>" if error else ""


def login(params: dict[str, str], client_name: str, error: str | None = None,
          brand: Branding | None = None) -> str:
    """The sign-in page: who asks (the app) and at which organization; the same words for everyone, since
    who is signing in (a clinician or a patient) is known only afterwards."""
    brand = brand or Branding()
    return _page("Sign in", f"""<p>The application <strong>{escape(client_name)}</strong> wants to connect to
{escape(brand.name)}. Sign in with your {escape(brand.name)} account to continue. You will see what it asks
for before anything is shared.</p>
{_error(error)}<form method=post action=authorize>{_hidden(params)}<input type=hidden name='_step' value='login'>
<label for=username>User name</label><input id=username name=username autocomplete=username required>
<label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>
<button type=submit id=sign-in>Sign in</button></form>""", brand)


def _picker(p: Picker) -> str:
    """The search form and one page of matches as radio buttons (none chosen), with page buttons."""
    rows = "".join(f"<div class=choice><input type=radio name=patient id='pt-{i}' value='{escape(pid)}' required>"
                   f"<label for='pt-{i}'>{escape(label)}</label></div>" for i, (pid, label) in enumerate(p.matches))
    count = p.count_text
    nav = ""
    if p.previous is not None:
        nav += (f"<button type=submit class=secondary name=page value='{p.previous}' "
                "formnovalidate id=prev-page>Previous page</button>")
    if p.following is not None:
        nav += (f"<button type=submit class=secondary name=page value='{p.following}' formnovalidate "
                "id=next-page>Next page</button>")
    return f"""<fieldset><legend>Find the patient</legend><div class=row>
<div><label for=q-name>Name</label><input id=q-name name=q_name value='{escape(p.name)}'></div>
<div><label for=q-birthdate>Birth date</label><input id=q-birthdate name=q_birthdate type=date value='{escape(p.birthdate)}'></div>
<div><label for=q-identifier>Identifier (e.g. MRN)</label><input id=q-identifier name=q_identifier value='{escape(p.identifier)}'></div>
</div><button type=submit class=secondary name=decision value=search formnovalidate id=search>Search</button></fieldset>
<fieldset id=patients><legend>Choose the patient</legend><p class=muted id=patient-count role=status>{count}</p>
{rows}{nav}</fieldset>"""


def consent(params: dict[str, str], client_name: str, ticket: str, scope: str | None, *,
            clinician: bool, picker: Picker | None = None, patient_label: str | None = None,
            error: str | None = None, brand: Branding | None = None) -> str:
    """The consent page: what the app asks for in plain words, for whom (the launch patient named, a
    patient picker with search and paging and nothing preselected, or "your record" for a patient), with
    Allow and Deny. ``clinician`` picks the wording."""
    brand = brand or Branding()
    items = "".join(f"<li>{escape(s)}</li>" for s in describe_scopes(scope, clinician))
    if patient_label and clinician:
        who = f"<p class=patient id=launch-patient>Patient: <strong>{escape(patient_label)}</strong></p>"
        intro = f"<strong>{escape(client_name)}</strong> asks to work on this patient's record:"
    elif patient_label:
        who = f"<p class=patient id=launch-patient>Your record: <strong>{escape(patient_label)}</strong></p>"
        intro = f"<strong>{escape(client_name)}</strong> asks to use your health record:"
    elif clinician:
        who, intro = "", (f"<strong>{escape(client_name)}</strong> asks to work with patient records "
                          "you have access to as a clinician:")
    else:
        who, intro = "", f"<strong>{escape(client_name)}</strong> asks to use your health record:"
    pick = _picker(picker) if picker is not None else ""
    return _page("Allow access?", f"""<p>{intro}</p>{who}
{_error(error)}<form method=post action=authorize>{_hidden(params)}<input type=hidden name='_step' value='consent'>
<input type=hidden name='ticket' value='{escape(ticket)}'>{pick}
<h2>It will be able to</h2><ul class=scopes>{items}</ul>
<p class=muted>You can withdraw this access at any time on the page "Apps you have authorized" (<a
href=manage>{escape(brand.name)} account: authorized apps</a>).</p>
<button type=submit name=decision value=allow id=allow>Allow</button>
<button type=submit class=secondary name=decision value=deny id=deny formnovalidate>Deny</button></form>""", brand)


def error(message: str, brand: Branding | None = None) -> str:
    return _page("Authorization request refused", f"<p class=err role=alert>{escape(message)}</p>"
                 "<p>The application's request could not be accepted. Nothing was shared.</p>", brand or Branding())


def manage_login(error: str | None = None, brand: Branding | None = None) -> str:
    """Sign-in for the "apps you have authorized" page."""
    brand = brand or Branding()
    return _page("Apps you have authorized", f"""<p>Sign in to see the applications you have allowed to use
{escape(brand.name)} on your behalf, and to withdraw their access.</p>
{_error(error)}<form method=post action=manage><input type=hidden name='_step' value='login'>
<label for=username>User name</label><input id=username name=username autocomplete=username required>
<label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>
<button type=submit id=sign-in>Sign in</button></form>""", brand)


@dataclass
class AuthorizedApp:
    client_id: str
    name: str
    scope: str
    until: str  # when its longest-lived token expires (UTC)


def manage(apps: list[AuthorizedApp], ticket: str, clinician: bool, notice: str | None = None,
           brand: Branding | None = None) -> str:
    """The signed-in user's authorized apps (those holding a live token of this user), each with what it
    may do and a button that withdraws its access (every token it holds for this user)."""
    brand = brand or Branding()
    note = f"<p role=status id=notice>{escape(notice)}</p>" if notice else ""
    if not apps:
        body = "<p id=no-apps>No application holds access on your behalf.</p>"
    else:
        rows = []
        for i, a in enumerate(apps):
            can = "".join(f"<li>{escape(s)}</li>" for s in describe_scopes(a.scope, clinician))
            rows.append(f"""<tr><th scope=row>{escape(a.name)}</th><td><ul class=scopes>{can}</ul></td>
<td>{escape(a.until)}</td><td><form method=post action=manage><input type=hidden name='_step' value='revoke'>
<input type=hidden name=ticket value='{escape(ticket)}'><input type=hidden name=client_id value='{escape(a.client_id)}'>
<button type=submit id='revoke-{i}' aria-label='Withdraw access of {escape(a.name)}'>Withdraw access</button></form></td></tr>""")
        body = ("<table><caption class=muted>Applications with access on your behalf</caption><thead><tr>"
                "<th scope=col>Application</th><th scope=col>It can</th><th scope=col>Access until</th>"
                f"<th scope=col><span class=muted>Action</span></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return _page("Apps you have authorized", note + body, brand)
