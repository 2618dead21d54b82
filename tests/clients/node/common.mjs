// Shared by the flow scripts: a fhir-kit-client Client on FHIR_BASE (with FHIR_TOKEN as bearer token when
// set), error capture as {status, outcome}, and one JSON document printed on stdout for pytest to check.
import { Client } from 'fhir-kit-client';

export function makeClient() {
  const baseUrl = process.env.FHIR_BASE;
  if (!baseUrl) throw new Error('FHIR_BASE is not set');
  const client = new Client({ baseUrl });
  if (process.env.FHIR_TOKEN) client.bearerToken = process.env.FHIR_TOKEN;
  return client;
}

// The HTTP status of a response the library returned (it keeps the fetch Response beside the body).
export function statusOf(result) {
  return Client.httpFor(result).response?.status;
}

// Await a call; a refusal comes back as {error: true, status, outcome} instead of a throw.
export async function attempt(promise) {
  try {
    const body = await promise;
    return { error: false, status: statusOf(body), body };
  } catch (err) {
    if (err.response) return { error: true, status: err.response.status, outcome: err.response.data };
    throw err;
  }
}

export function emit(result) {
  process.stdout.write(JSON.stringify(result));
}

export const ids = (bundle) => (bundle.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`);
