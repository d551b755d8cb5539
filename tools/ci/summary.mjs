// Reads vitest's JSON report and prints the plain summary line CI reads.
// Usage: node summary.mjs <report.json> <failed-checks> <vitest-exit-code>
import { readFileSync, existsSync } from 'node:fs';

const [file, failedChecksArg = '0', rcArg = '0'] = process.argv.slice(2);
const failedChecks = Number(failedChecksArg);
const rc = Number(rcArg);
let passed = 0, failed = 0, skipped = 0;
if (file && existsSync(file)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed = report.numFailedTests ?? 0;
  skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // A suite that failed to load has no tests to count: count it as a failure.
  failed += (report.testResults ?? []).filter((r) => r.status === 'failed' && (r.assertionResults ?? []).length === 0).length;
} else {
  failed += 1;
  console.error(`no test report at ${file}`);
}
failed += failedChecks;
if (rc !== 0 && failed === 0) failed = 1;
if (passed === 0 && failed === 0) failed = 1; // a run with no tests is not green
if (failedChecks) console.error(`${failedChecks} check(s) failed (lint, typecheck or generated docs): counted as failures`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
