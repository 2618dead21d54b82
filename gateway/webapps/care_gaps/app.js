// The care-gaps SMART app (docs/apps.md). Written against the SMART App Launch protocol and FHIR R4 only,
// with the fhirclient library: launch.html starts an EHR launch (`iss` + `launch` in its URL) or a standalone
// launch (PKCE S256 in both); the server redirects back to index.html, which asks the FHIR server for the
// launch patient's gaps in care (DEQM Measure/$care-gaps), shows each measure's gap status, period, why
// (population criteria met or not, from the individual MeasureReport in the gaps Bundle, and the evidence it
// evaluated) and what would close the gap; a clinician can record closing evidence, sent with
// Measure/[id]/$submit-data, after which the gaps are evaluated again. Printing gives a patient-friendly summary.
/* global FHIR */
"use strict";

const careGaps = (() => {
  const DEFAULT_CLIENT_ID = "care-gaps"; // ?client_id= in the launch URL wins (another server's registration)
  const STATUSES = ["open-gap", "prospective-gap", "closed-gap", "not-applicable"];
  const STATUS_TEXT = {
    "open-gap": "Open gap", "prospective-gap": "Gap still open this period", "closed-gap": "Closed",
    "not-applicable": "Not applicable",
  };
  const PATIENT_TEXT = {
    "open-gap": "Due: talk to your care team about this.",
    "prospective-gap": "Due this year: there is still time to get it done.",
    "closed-gap": "Done: nothing to do for this period.",
    "not-applicable": "Does not apply to you for this period.",
  };
  const POPULATIONS = {
    "initial-population": "Initial population", "denominator": "Denominator",
    "denominator-exclusion": "Denominator exclusion", "denominator-exception": "Denominator exception",
    "numerator": "Numerator", "numerator-exclusion": "Numerator exclusion",
  };
  const SCT = "http://snomed.info/sct";
  const LOINC = "http://loinc.org";
  // closing evidence the app can record: offered for a measure whose criteria name one of its codes
  const EVIDENCE = [
    { id: "mammogram", label: "Screening mammogram (procedure)", type: "Procedure",
      coding: { system: SCT, code: "24623002", display: "Screening mammography" }, names: ["24623002", "71651007", "24606-6"] },
    { id: "hba1c", label: "HbA1c result (observation)", type: "Observation",
      coding: { system: LOINC, code: "4548-4", display: "Hemoglobin A1c/Hemoglobin.total in Blood" },
      value: { label: "HbA1c (%)", unit: "%" }, names: ["4548-4"] },
    { id: "bp", label: "Blood pressure reading (observation)", type: "Observation",
      coding: { system: LOINC, code: "85354-9", display: "Blood pressure panel" },
      components: [{ label: "Systolic (mmHg)", code: "8480-6" }, { label: "Diastolic (mmHg)", code: "8462-4" }],
      names: ["85354-9"] },
  ];
  const state = { client: null, patient: null, measures: {}, gaps: [], year: null, canWrite: false };

  const $ = (id) => document.getElementById(id);
  function text(id, value) { $(id).textContent = value; }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  async function config() {
    // the FHIR base of the gateway serving this app: the default server of a standalone launch
    try {
      const r = await fetch("config.json", { credentials: "omit" });
      return r.ok ? await r.json() : {};
    } catch (err) {
      return {};
    }
  }

  async function launch() {
    const params = new URLSearchParams(window.location.search);
    if (params.has("period")) sessionStorage.setItem("care-gaps-year", params.get("period"));
    const conf = await config();
    const ehr = params.has("launch");
    // an EHR launch gets its patient from the launch; a standalone launch asks for launch/patient (a clinician
    // picks a patient, a patient user gets their own record). user/*.cu lets a clinician send $submit-data;
    // a patient user is never granted user/ scopes, so the app then only reads.
    const scope = `${ehr ? "launch" : "launch/patient"} openid fhirUser patient/*.rs user/*.cu`;
    return FHIR.oauth2.authorize({
      clientId: params.get("client_id") || DEFAULT_CLIENT_ID,
      iss: conf.fhirBase, // ?iss= in the URL wins: an EHR launch, or a standalone launch at another server
      scope,
      redirectUri: "index.html",
      pkceMode: "required",
    }).catch((err) => text("status", `error: ${err.message}`));
  }

  function nameOf(patient) {
    const name = (patient.name || [])[0] || {};
    return [...(name.given || []), name.family].filter(Boolean).join(" ") || patient.id;
  }

  function gapStatus(issue) {
    for (const ext of issue.modifierExtension || []) {
      if (ext.url && ext.url.endsWith("extension-gapStatus")) {
        return ((ext.valueCodeableConcept || {}).coding || [])[0].code;
      }
    }
    return null;
  }

  function periodText(period) {
    return period ? `${period.start || "?"} to ${period.end || "?"}` : "";
  }

  async function measureFor(canonical) {
    // the Measure a report names (url|version), read once: its title, population descriptions and criteria
    const [url, version] = canonical.split("|");
    if (!(canonical in state.measures)) {
      const query = `Measure?url=${encodeURIComponent(url)}${version ? `&version=${encodeURIComponent(version)}` : ""}`;
      let measure = null;
      try {
        const bundle = await state.client.request(query);
        measure = ((bundle.entry || [])[0] || {}).resource || null;
      } catch (err) {
        measure = null; // the report alone still gives status, period and populations
      }
      state.measures[canonical] = measure;
    }
    return state.measures[canonical];
  }

  function populationDescriptions(measure) {
    const out = {};
    for (const group of (measure && measure.group) || []) {
      for (const p of group.population || []) {
        const code = ((p.code || {}).coding || [])[0];
        if (code && p.description) out[code.code] = p.description;
      }
    }
    return out;
  }

  function inverse(measure, report) {
    const notation = (measure && measure.improvementNotation) || report.improvementNotation || {};
    return ((notation.coding || [])[0] || {}).code === "decrease";
  }

  function describeResource(res) {
    const code = res.code || res.type && res.type[0] || res.vaccineCode || {};
    const label = code.text || ((code.coding || [])[0] || {}).display || ((code.coding || [])[0] || {}).code || "";
    const when = res.performedDateTime || (res.performedPeriod || {}).end || res.effectiveDateTime
      || (res.period || {}).start || res.onsetDateTime || res.authoredOn || "";
    return `${res.resourceType}${label ? `: ${label}` : ""}${when ? ` (${String(when).slice(0, 10)})` : ""}`;
  }

  // one gaps entry per DetectedIssue: status, its MeasureReport, the Measure, and the patient data evaluated
  async function readGaps(bundle) {
    const byUrl = {};
    for (const e of bundle.entry || []) byUrl[e.fullUrl] = e.resource;
    const reportOf = {};
    const composition = (bundle.entry || []).map((e) => e.resource).find((r) => r.resourceType === "Composition");
    const out = [];
    for (const e of bundle.entry || []) {
      const issue = e.resource;
      if (issue.resourceType !== "DetectedIssue") continue;
      const detail = ((issue.evidence || [])[0] || {}).detail || [];
      const report = byUrl[(detail[0] || {}).reference] || {};
      reportOf[report.id] = report;
      const measure = report.measure ? await measureFor(report.measure) : null;
      const section = ((composition || {}).section || []).find((s) => (s.entry || []).some((x) => x.reference === e.fullUrl));
      const evaluated = (report.evaluatedResource || []).map((ref) => {
        const found = Object.entries(byUrl).find(([u]) => u.endsWith(`/${ref.reference}`) || u === ref.reference);
        return found ? found[1] : null;
      }).filter(Boolean);
      out.push({
        status: gapStatus(issue), report, measure, evaluated,
        title: (measure && (measure.title || measure.name)) || (section && section.title) || report.measure,
      });
    }
    return out;
  }

  function whyList(gap) {
    const list = el("ul", { class: "why" });
    const descriptions = populationDescriptions(gap.measure);
    for (const group of gap.report.group || []) {
      for (const p of group.population || []) {
        const code = ((p.code || {}).coding || [])[0] || {};
        if (!POPULATIONS[code.code]) continue;
        const met = (p.count || 0) > 0;
        const li = el("li", {}, el("span", { class: met ? "met" : "unmet" }, met ? "Met: " : "Not met: "),
          `${POPULATIONS[code.code]}${descriptions[code.code] ? ` (${descriptions[code.code]})` : ""}`);
        list.append(li);
      }
    }
    return list;
  }

  function closeText(gap) {
    const numerator = populationDescriptions(gap.measure).numerator;
    if (gap.status === "closed-gap") return "Nothing: the gap is closed for this period.";
    if (gap.status === "not-applicable") return "Nothing: the measure does not apply to this patient in this period.";
    if (inverse(gap.measure, gap.report)) {
      return `The numerator of this measure is the unwanted outcome; the gap closes when it no longer holds: ${
        numerator || "see the measure"}. Recording a newer result that does not meet it closes the gap.`;
    }
    return `Meet the numerator within the period: ${numerator || "see the measure"}.`;
  }

  function render() {
    const root = $("gaps");
    root.replaceChildren();
    for (const [i, gap] of state.gaps.entries()) {
      const evidence = el("ul", { class: "evidence" });
      for (const r of gap.evaluated) evidence.append(el("li", {}, describeResource(r)));
      if (!gap.evaluated.length) evidence.append(el("li", {}, "No data of this patient was evaluated."));
      const card = el("section", { class: "gap", id: `gap-${i}`, "aria-labelledby": `gap-title-${i}`,
        "data-measure": gap.report.measure, "data-status": gap.status },
      el("div", { class: "gap-head" }, el("h2", { id: `gap-title-${i}` }, gap.title),
        el("span", { class: `badge status-${gap.status}` }, STATUS_TEXT[gap.status] || gap.status)),
      el("p", { class: "muted" }, `Period: ${periodText(gap.report.period)}`),
      el("h3", {}, "Why"), whyList(gap),
      el("h3", {}, "Data evaluated"), evidence,
      el("h3", {}, "What would close it"), el("p", {}, closeText(gap)));
      root.append(card);
    }
    renderSummary();
    renderRecordForm();
  }

  function renderSummary() {
    text("summary-intro", `${nameOf(state.patient)}, born ${state.patient.birthDate || "unknown"}: your checks for ${
      state.year}.`);
    const items = $("summary-items");
    items.replaceChildren();
    for (const gap of state.gaps) {
      if (gap.status === "not-applicable") continue;
      items.append(el("li", {}, el("strong", {}, `${gap.title.replace(/^Demo:\s*/, "")}: `), PATIENT_TEXT[gap.status]));
    }
    if (!items.children.length) items.append(el("li", {}, "No checks apply to you for this period."));
    text("summary-footer", `Printed ${new Date().toISOString().slice(0, 10)}. Questions? Ask your care team.`);
  }

  function evidenceFor(gap) {
    const json = JSON.stringify(gap.measure || {});
    return EVIDENCE.filter((kind) => kind.names.some((code) => json.includes(code)));
  }

  function renderRecordForm() {
    const section = $("record");
    const open = state.gaps.filter((g) => (g.status === "open-gap" || g.status === "prospective-gap") && evidenceFor(g).length);
    section.hidden = !state.canWrite || !open.length;
    if (section.hidden) return;
    const measureSelect = $("evidence-measure");
    const chosen = measureSelect.value;
    measureSelect.replaceChildren(...open.map((g) => el("option", { value: g.report.measure }, g.title)));
    if (open.some((g) => g.report.measure === chosen)) measureSelect.value = chosen;
    renderKinds();
  }

  function renderKinds() {
    const gap = state.gaps.find((g) => g.report.measure === $("evidence-measure").value);
    const kinds = gap ? evidenceFor(gap) : [];
    $("evidence-kind").replaceChildren(...kinds.map((k) => el("option", { value: k.id }, k.label)));
    renderValueFields();
  }

  function renderValueFields() {
    const kind = EVIDENCE.find((k) => k.id === $("evidence-kind").value);
    const box = $("value-fields");
    box.replaceChildren();
    const fields = kind ? (kind.components || (kind.value ? [{ label: kind.value.label, code: "value" }] : [])) : [];
    for (const f of fields) {
      box.append(el("label", { for: `evidence-${f.code}` }, f.label),
        el("input", { id: `evidence-${f.code}`, type: "number", step: "any", required: "required" }));
    }
  }

  function uuid() {
    return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  function evidenceResource(kind, date) {
    const subject = { reference: `Patient/${state.patient.id}` };
    const id = `cg-${uuid()}`;
    if (kind.type === "Procedure") {
      return { resourceType: "Procedure", id, status: "completed", code: { coding: [kind.coding], text: kind.coding.display },
        subject, performedDateTime: date };
    }
    const obs = { resourceType: "Observation", id, status: "final", code: { coding: [kind.coding], text: kind.coding.display },
      subject, effectiveDateTime: date };
    if (kind.value) {
      obs.valueQuantity = { value: Number($("evidence-value").value), unit: kind.value.unit,
        system: "http://unitsofmeasure.org", code: kind.value.unit };
    }
    if (kind.components) {
      obs.component = kind.components.map((c) => ({ code: { coding: [{ system: LOINC, code: c.code }] },
        valueQuantity: { value: Number($(`evidence-${c.code}`).value), unit: "mmHg",
          system: "http://unitsofmeasure.org", code: "mm[Hg]" } }));
    }
    return obs;
  }

  async function record(event) {
    event.preventDefault();
    const gap = state.gaps.find((g) => g.report.measure === $("evidence-measure").value);
    const kind = EVIDENCE.find((k) => k.id === $("evidence-kind").value);
    const date = $("evidence-date").value;
    if (!gap || !kind || !date) return;
    const resource = evidenceResource(kind, date);
    const user = state.client.user.fhirUser;
    const report = {
      resourceType: "MeasureReport",
      meta: { profile: ["http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/datax-measurereport-deqm"] },
      extension: [{ url: "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-submitDataUpdateType",
        valueCode: "incremental" }],
      status: "complete", type: "data-collection", measure: gap.report.measure,
      subject: { reference: `Patient/${state.patient.id}` }, date: new Date().toISOString(),
      // who reports: the signed-in clinician, else (an open server) the patient's practitioner or organization
      reporter: { reference: user ? user.replace(/^.*\/(\w+\/[^/]+)$/, "$1")
        : ((state.patient.generalPractitioner || [])[0] || state.patient.managingOrganization || {}).reference
          || `Patient/${state.patient.id}` },
      period: gap.report.period,
      evaluatedResource: [{ reference: `${resource.resourceType}/${resource.id}` }],
    };
    const measureId = gap.measure && gap.measure.id;
    const body = { resourceType: "Parameters", parameter: [{ name: "bundle", resource: {
      resourceType: "Bundle", type: "collection", entry: [{ resource: report }, { resource }] } }] };
    text("status", "sending the evidence to the payer");
    try {
      await state.client.request({
        url: measureId ? `Measure/${encodeURIComponent(measureId)}/$submit-data` : "Measure/$submit-data",
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/fhir+json" },
      });
    } catch (err) {
      text("status", `error: the payer's gateway refused the evidence: ${err.message}`);
      return;
    }
    const before = gap.status;
    await evaluate();
    const after = (state.gaps.find((g) => g.report.measure === gap.report.measure) || {}).status;
    const notice = $("notice");
    notice.hidden = false;
    notice.textContent = after === "closed-gap"
      ? `${gap.title}: the gap is closed after the new evaluation (was ${STATUS_TEXT[before]}).`
      : `${gap.title}: the evidence was sent; the new evaluation still shows ${STATUS_TEXT[after] || after}.`;
  }

  async function evaluate() {
    const year = state.year;
    text("status", `evaluating the measures for ${year}`);
    const query = new URLSearchParams({ periodStart: `${year}-01-01`, periodEnd: `${year}-12-31`,
      subject: `Patient/${state.patient.id}` });
    for (const s of STATUSES) query.append("status", s);
    try {
      const result = await state.client.request(`Measure/$care-gaps?${query}`);
      const bundles = (result.parameter || []).filter((p) => p.name === "return").map((p) => p.resource);
      state.gaps = [];
      for (const b of bundles) state.gaps.push(...await readGaps(b));
      state.gaps.sort((a, b) => STATUSES.indexOf(a.status) - STATUSES.indexOf(b.status) || a.title.localeCompare(b.title));
      render();
      const open = state.gaps.filter((g) => g.status === "open-gap" || g.status === "prospective-gap").length;
      text("status", `ready: ${state.gaps.length} measures, ${open} with an open gap`);
    } catch (err) {
      text("status", `error: ${err.message}`);
    }
  }

  function grantedScopes() {
    return String((state.client.state.tokenResponse || {}).scope || "").split(/\s+/);
  }

  async function show() {
    try {
      state.client = await FHIR.oauth2.ready();
      state.patient = await state.client.request(`Patient/${encodeURIComponent(state.client.patient.id)}`);
      text("patient-name", nameOf(state.patient));
      text("patient-birth", state.patient.birthDate || "unknown");
      text("patient-gender", state.patient.gender || "unknown");
      text("patient-id", state.patient.id);
      text("user", state.client.user.fhirUser || "(not shared)");
      // an open server (authorization off) gives no token and refuses nothing; else the token's scopes decide
      const open = !(state.client.state.tokenResponse || {}).access_token;
      state.canWrite = open || grantedScopes().some((s) => /^user\/(\*|MeasureReport)\.(c|[cruds]*c[cruds]*|write|\*)$/.test(s));
      const thisYear = new Date().getFullYear();
      const wanted = Number(sessionStorage.getItem("care-gaps-year")) || thisYear;
      const years = new Set([thisYear, thisYear - 1, thisYear - 2, wanted]);
      $("year").replaceChildren(...[...years].sort().reverse().map((y) => el("option", { value: y }, y)));
      $("year").value = String(wanted);
      state.year = wanted;
      $("period-form").addEventListener("submit", (e) => { e.preventDefault(); state.year = Number($("year").value); evaluate(); });
      $("print").addEventListener("click", () => window.print());
      $("evidence-measure").addEventListener("change", renderKinds);
      $("evidence-kind").addEventListener("change", renderValueFields);
      $("record-form").addEventListener("submit", record);
      await evaluate();
    } catch (err) {
      text("status", `error: ${err.message}`);
    }
  }

  function start() {
    const page = document.body.dataset.page;
    if (typeof FHIR === "undefined") {
      text("status", "error: the fhirclient library is not installed on this server (make install runs npm ci)");
      return;
    }
    if (page === "launch") launch();
    if (page === "app") show();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  return { launch, show, evaluate, state, client: () => state.client };
})();
