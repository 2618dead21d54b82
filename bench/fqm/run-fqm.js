// Runs fqm-execution on one measure bundle and a file of patient Bundles, for bench/measures.py.
// Usage: node run-fqm.js MEASURE_BUNDLE PATIENTS_JSON PERIOD_START PERIOD_END
// Prints one JSON object: {"seconds": calculation time, "patients": {id: [[population code, bool], ...] per group}}.
'use strict';
const fs = require('fs');
const { Calculator } = require('fqm-execution');

async function main() {
  const [measurePath, patientsPath, start, end] = process.argv.slice(2);
  const measureBundle = JSON.parse(fs.readFileSync(measurePath, 'utf8'));
  const patientBundles = JSON.parse(fs.readFileSync(patientsPath, 'utf8'));
  const t0 = process.hrtime.bigint();
  const { results } = await Calculator.calculate(measureBundle, patientBundles, {
    measurementPeriodStart: start,
    measurementPeriodEnd: end,
    calculateHTML: false,
    calculateSDEs: false,
    calculateClauseCoverage: false,
    verboseCalculationResults: false,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const patients = {};
  for (const r of results) {
    patients[r.patientId] = (r.detailedResults || []).map((g) =>
      (g.populationResults || []).map((p) => [p.populationType, Boolean(p.result)]));
  }
  process.stdout.write(JSON.stringify({ seconds, patients }));
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + '\n');
  process.exit(1);
});
