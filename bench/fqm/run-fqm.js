// Runs fqm-execution on one measure bundle and a file of patient Bundles, for bench/measures.py.
// Usage: node run-fqm.js MEASURE_BUNDLE PATIENTS_JSON PERIOD_START PERIOD_END
// Both files are read and parsed first (the gateway's counterpart: the Measure and the patients are in its
// database); the clock then runs around Calculator.calculate, which prepares the measure (ELM, value sets)
// and evaluates every patient, supplemental data included (the gateway's population report has them too).
// Prints one JSON object: {"seconds": calculation time, "maxRSS": peak resident KiB of this process,
// "patients": {id: [[population code, bool], ...] per group}}.
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
    calculateSDEs: true,
    calculateClauseCoverage: false,
    verboseCalculationResults: false,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const patients = {};
  for (const r of results) {
    patients[r.patientId] = (r.detailedResults || []).map((g) =>
      (g.populationResults || []).map((p) => [p.populationType, Boolean(p.result)]));
  }
  // VmHWM: this process's own peak (getrusage's maxRSS carries the parent's over fork and exec)
  const hwm = /VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  const maxRSS = hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS;
  process.stdout.write(JSON.stringify({ seconds, maxRSS, patients }));
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + '\n');
  process.exit(1);
});
