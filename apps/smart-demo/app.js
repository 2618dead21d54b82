// The SMART demo app (docs/smart-apps.md). launch.html calls smartDemo.launch(): a standalone launch, or an
// EHR launch when the URL carries `iss` and `launch`. The gateway redirects back to index.html, which calls
// smartDemo.show(): it shows the patient's name and Observations, and its "Refresh access token" button
// trades the refresh token for a new access token with client.refresh().
/* global FHIR */
"use strict";

const smartDemo = (() => {
  const DEFAULT_SERVER = "http://127.0.0.1:8080/fhir"; // the demo gateway; ?iss= in the launch URL wins
  const DEFAULT_CLIENT_ID = "smart-demo"; // ?clientId= wins
  // fhirclient refreshes by itself shortly before the access token expires; the demo turns that off for its
  // requests so that a refresh happens only when you press the button (a real app can leave it on)
  const EXPLICIT_REFRESH = { useRefreshToken: false };
  let client = null;
  let refreshes = 0;

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function launch() {
    const params = new URLSearchParams(window.location.search);
    // an EHR launch asks for the `launch` scope and gets its patient from the launch; a standalone launch
    // asks for `launch/patient` and the user picks one (a patient user gets their own record)
    const context = params.has("launch") ? "launch" : "launch/patient";
    return FHIR.oauth2.authorize({
      clientId: DEFAULT_CLIENT_ID,
      iss: DEFAULT_SERVER, // fhirclient lets ?iss= in the URL win (an EHR launch, or another server)
      scope: `${context} openid fhirUser offline_access patient/*.rs`,
      redirectUri: "index.html",
      pkceMode: "required", // PKCE S256, as the gateway demands
    }).catch((err) => text("status", `error: ${err.message}`));
  }

  function label(concept) {
    const c = concept || {};
    return c.text || (c.coding && c.coding[0] && (c.coding[0].display || c.coding[0].code)) || "";
  }

  function valueOf(item) {
    if (item.valueQuantity) {
      return `${item.valueQuantity.value} ${item.valueQuantity.unit || ""}`.trim();
    }
    if (item.valueCodeableConcept) {
      return label(item.valueCodeableConcept);
    }
    return item.valueString !== undefined ? String(item.valueString) : "";
  }

  function describe(obs) {
    // a blood pressure has its values in components (systolic, diastolic)
    const value = obs.component
      ? obs.component.map((c) => `${label(c.code)} ${valueOf(c)}`.trim()).join(", ")
      : valueOf(obs);
    const when = obs.effectiveDateTime ? ` (${obs.effectiveDateTime.slice(0, 10)})` : "";
    return `${label(obs.code) || "Observation"}${value ? ": " + value : ""}${when}`;
  }

  function showExpiry() {
    const at = client.state.expiresAt;
    text("expires", at ? new Date(at * 1000).toISOString() : "unknown");
  }

  async function loadObservations() {
    const bundle = await client.request(`Observation?patient=${encodeURIComponent(client.patient.id)}&_count=20`,
                                        EXPLICIT_REFRESH);
    const list = document.getElementById("observations");
    list.replaceChildren();
    for (const entry of bundle.entry || []) {
      const item = document.createElement("li");
      item.textContent = describe(entry.resource);
      list.appendChild(item);
    }
    return (bundle.entry || []).length;
  }

  async function reload() {
    text("status", "loading");
    try {
      const n = await loadObservations();
      text("status", `loaded ${n} observations`);
    } catch (err) {
      text("status", `error: ${err.message}`);
    }
  }

  async function refresh() {
    text("status", "refreshing");
    try {
      await client.refresh();
      refreshes += 1;
      text("refreshes", String(refreshes));
      showExpiry();
      const n = await loadObservations();
      text("status", `refreshed; loaded ${n} observations`);
    } catch (err) {
      text("status", `error: ${err.message}`);
    }
  }

  async function show() {
    try {
      client = await FHIR.oauth2.ready();
      const patient = await client.request(`Patient/${encodeURIComponent(client.patient.id)}`,
                                         EXPLICIT_REFRESH);
      const name = (patient.name || [])[0] || {};
      text("patient-name", [...(name.given || []), name.family].filter(Boolean).join(" ") || patient.id);
      text("patient-id", patient.id);
      text("user", client.user.fhirUser || "(not shared)");
      showExpiry();
      document.getElementById("reload").addEventListener("click", reload);
      document.getElementById("refresh").addEventListener("click", refresh);
      const n = await loadObservations();
      text("status", `ready; loaded ${n} observations`);
    } catch (err) {
      text("status", `error: ${err.message}`);
    }
  }

  return { launch, show, reload, refresh, client: () => client };
})();
