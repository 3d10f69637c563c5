import { defineConfig } from 'vitest/config'

// The tests that cover the pure modules mutated by stryker.config.mjs, without the GPU, the
// calibrations (timed) and the runtimes: each mutant runs the tests that cover it.
export default defineConfig({
  test: {
    include: [
      'test/metadata.test.ts',
      'test/dtype.test.ts',
      'test/misuse.test.ts',
      'test/api.test.ts',
      'test/peft-config.test.ts',
      'test/peft-config-fixture.test.ts',
      'test/safetensors.test.ts',
      'test/fuzz-safetensors.test.ts',
      'test/dispatch.test.ts',
      'test/validate.test.ts',
    ],
    testNamePattern: /^(?!profiles and calibration|explain\(\) is the auto decision|every adapter in pool layers)/,
    pool: 'forks',
    testTimeout: 120_000,
  },
})
