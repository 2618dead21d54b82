// $evaluate-measure (instance level, GET) and $care-gaps (type level, GET) on the demo measures.
import { emit, makeClient } from './common.mjs';

const client = makeClient();
const [measureId, patient] = process.argv.slice(2);
const report = await client.operation({
  name: '$evaluate-measure', resourceType: 'Measure', id: measureId, method: 'GET',
  input: { periodStart: '2025-01-01', periodEnd: '2025-12-31', subject: `Patient/${patient}` },
});
const gaps = await client.operation({
  name: 'care-gaps', resourceType: 'Measure', method: 'GET',
  input: { periodStart: '2025-01-01', periodEnd: '2025-12-31', subject: `Patient/${patient}`, measureId, status: 'open-gap' },
});
emit({ report, gaps });
