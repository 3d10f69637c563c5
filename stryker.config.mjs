// Mutation testing of the pure modules (npm run mutate): StrykerJS with its vitest runner.
// Incremental: results of unchanged code and tests are reused from reports/stryker-incremental.json.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts' },
  mutate: [
    'src/metadata.ts',
    'src/dtype.ts',
    'src/validate.ts',
    'src/peft/config.ts',
    'src/peft/safetensors.ts',
    'src/dispatch/cost.ts',
  ],
  coverageAnalysis: 'perTest',
  // mutants in module-level values (tables, constants) would each rerun every test: left out
  ignoreStatic: true,
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  concurrency: 2,
  timeoutMS: 20000,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation.json' },
  thresholds: { high: 90, low: 80, break: 80 },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
}
