import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file in its own process: a native WebGPU (Dawn) fault can then only fail its file.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
})
