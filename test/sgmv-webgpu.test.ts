/**
 * The shared kernel grid (test/grid.ts, also run by the wasm suite) through the public API on the
 * WebGPU backend. Without a WebGPU adapter it is skipped (test/needs.ts; a failure under CI=true).
 */
import { afterAll, beforeAll, describe } from 'vitest'
import type { Runtime } from '../src/index.js'
import { has } from './needs.js'
import { gridSuite, runtimeFor } from './suite.js'

const gpuHere = await has('webgpu')
let rt: Runtime | undefined
beforeAll(async () => {
  if (gpuHere) rt = await runtimeFor('webgpu')
})
afterAll(() => rt?.dispose())

describe.runIf(gpuHere)('webgpu grid', () => gridSuite('webgpu', () => rt!))
