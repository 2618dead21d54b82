// chained search with _include, then paging forwards with nextPage and back with prevPage.
import { emit, ids, makeClient } from './common.mjs';

const client = makeClient();
const [family, code, count] = process.argv.slice(2);
const chained = await client.search({
  resourceType: 'Observation',
  searchParams: { 'subject:Patient.name': family, code: `urn:test:fkc|${code}`, _include: 'Observation:subject' },
});
const matches = (chained.entry ?? []).map((e) => ({ ref: `${e.resource.resourceType}/${e.resource.id}`, mode: e.search?.mode }));

const pages = [];
let page = await client.search({ resourceType: 'Observation', searchParams: { code: `urn:test:fkc|${code}`, _count: count, _sort: '_id' } });
pages.push(ids(page));
for (;;) {
  const next = await client.nextPage({ bundle: page });
  if (!next) break;
  pages.push(ids(next));
  page = next;
}
const back = [];
for (;;) {
  const prev = await client.prevPage({ bundle: page });
  if (!prev) break;
  back.push(ids(prev));
  page = prev;
}
emit({ total: chained.total, matches, pages, back });
