// conditional create (If-None-Exist), instance history and a transaction Bundle.
import { emit, makeClient, statusOf } from './common.mjs';

const client = makeClient();
const marker = process.argv[2];
const ident = `urn:test:fkc|${marker}`;
const patient = { resourceType: 'Patient', identifier: [{ system: 'urn:test:fkc', value: marker }] };
const options = { headers: { 'If-None-Exist': `identifier=${ident}` } };
const first = await client.create({ resourceType: 'Patient', body: patient, options });
const second = await client.create({ resourceType: 'Patient', body: patient, options });
await client.update({ resourceType: 'Patient', id: first.id, body: { ...patient, id: first.id, active: true } });
const history = await client.history({ resourceType: 'Patient', id: first.id });
const found = await client.search({ resourceType: 'Patient', searchParams: { identifier: ident } });

const patientUrl = 'urn:uuid:6f1c4f38-0d5e-4f2e-9d8b-2f0a1c9e7b11';
const tx = await client.transaction({
  body: {
    resourceType: 'Bundle', type: 'transaction', entry: [
      { fullUrl: patientUrl, resource: { resourceType: 'Patient', identifier: [{ system: 'urn:test:fkc-tx', value: marker }] },
        request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', status: 'final', code: { text: `tx ${marker}` }, subject: { reference: patientUrl } },
        request: { method: 'POST', url: 'Observation' } },
    ],
  },
});
const txPatient = tx.entry[0].response.location.split('/_history')[0].split('/').slice(-2).join('/');
const txObservation = tx.entry[1].response.location.split('/_history')[0].split('/').slice(-2).join('/');
const obs = await client.read({ resourceType: 'Observation', id: txObservation.split('/')[1] });
emit({
  first: { status: statusOf(first), id: first.id },
  second: { status: statusOf(second), id: second.id },
  history: { type: history.type, versions: history.entry.map((e) => e.resource?.meta?.versionId) },
  searchTotal: found.total,
  transaction: { type: tx.type, statuses: tx.entry.map((e) => e.response.status), patient: txPatient, observationSubject: obs.subject.reference },
});
