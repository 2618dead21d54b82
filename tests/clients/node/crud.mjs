// create, read, vread, update and delete one Patient; read after the delete (410).
import { attempt, emit, makeClient, statusOf } from './common.mjs';

const client = makeClient();
const marker = process.argv[2];
const created = await client.create({
  resourceType: 'Patient',
  body: { resourceType: 'Patient', identifier: [{ system: 'urn:test:fkc', value: marker }], name: [{ family: 'Kit', given: ['Node'] }] },
});
const read = await client.read({ resourceType: 'Patient', id: created.id });
const updated = await client.update({
  resourceType: 'Patient', id: created.id, body: { ...read, gender: 'female' },
});
const vread = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
const deleted = await attempt(client.delete({ resourceType: 'Patient', id: created.id }));
const gone = await attempt(client.read({ resourceType: 'Patient', id: created.id }));
emit({
  created: { status: statusOf(created), id: created.id, versionId: created.meta.versionId },
  read: { id: read.id, family: read.name[0].family },
  updated: { status: statusOf(updated), versionId: updated.meta.versionId, gender: updated.gender },
  vread: { versionId: vread.meta.versionId, gender: vread.gender ?? null },
  deleted: { status: deleted.status },
  afterDelete: { status: gone.status, outcome: gone.outcome?.resourceType },
});
