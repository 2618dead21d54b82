// Page through a search with nextPage while a second client deletes and creates between pages: after each
// page, two churn Observations already returned are deleted and two new ones created. Prints the stable
// ids (present throughout) and every id the pages returned, in order.
import { emit, makeClient } from './common.mjs';

const reader = makeClient();
const writer = makeClient();
const code = process.argv[2];
const coding = { coding: [{ system: 'urn:test:fkc-churn', code }] };
const create = async (kind) => (await writer.create({
  resourceType: 'Observation', body: { resourceType: 'Observation', status: 'final', code: coding, valueString: kind },
})).id;

const stable = [];
const churn = [];
for (let i = 0; i < 9; i += 1) {
  churn.push(await create('churn'));
  stable.push(await create('stable'));
}
const returned = [];
let pages = 0;
let page = await reader.search({ resourceType: 'Observation', searchParams: { code: `urn:test:fkc-churn|${code}`, _count: 4 } });
while (page && pages < 50) { // bounded: each page adds two resources and consumes four
  pages += 1;
  const got = (page.entry ?? []).map((e) => e.resource);
  returned.push(...got.map((r) => r.id));
  for (let i = 0; i < 2; i += 1) {
    const victim = churn.find((c) => returned.includes(c));
    if (victim) {
      churn.splice(churn.indexOf(victim), 1);
      await writer.delete({ resourceType: 'Observation', id: victim });
    }
    churn.push(await create('churn'));
  }
  page = await reader.nextPage({ bundle: page });
}
emit({ stable, returned, pages });
