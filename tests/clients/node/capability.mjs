// The CapabilityStatement through client.capabilityStatement() and CapabilityTool: where each operation
// code is found (server level, or the resource types that list it), a few interactions, and a probe of
// every (operation, level, type) pytest names, called with client.operation(), so the type and instance
// levels, which a CapabilityStatement does not tell apart, are checked against the routes themselves.
import { CapabilityTool } from 'fhir-kit-client';
import { attempt, emit, makeClient } from './common.mjs';

const client = makeClient();
const { codes, probes } = JSON.parse(process.env.CAPABILITY_INPUT);
const cs = await client.capabilityStatement();
const tool = new CapabilityTool(cs);
const types = tool.serverCapabilities().resource.map((r) => r.type);

const found = {};
for (const code of codes) {
  found[code] = {
    server: tool.supportFor({ capabilityType: 'operation', where: { name: code } }),
    types: types.filter((resourceType) => tool.supportFor({ resourceType, capabilityType: 'operation', where: { name: code } })),
  };
}
const body = { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'NotAType' }] };
const probed = [];
for (const p of probes) {
  const r = await attempt(client.operation({
    name: p.name, resourceType: p.type ?? undefined, id: p.id ?? undefined, method: 'POST', input: body,
    options: { headers: { prefer: 'respond-async' } },
  }));
  const issue = r.outcome?.issue?.[0] ?? {};
  probed.push({ ...p, status: r.status, diagnostics: issue.diagnostics ?? '' });
}
emit({
  types,
  found,
  probed,
  interactions: {
    transaction: tool.serverCan('transaction'),
    batch: tool.serverCan('batch'),
    patientRead: tool.resourceCan('Patient', 'read'),
    patientSearch: tool.resourceCan('Patient', 'search-type'),
    patientName: tool.resourceSearch('Patient', 'name'),
    measureInteractions: tool.interactionsFor({ resourceType: 'Measure' }),
  },
});
