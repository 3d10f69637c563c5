/**
 * The shared kernel grid (test/grid.ts) on the WebGPU backend with the tiles of a big GPU forced
 * ('discrete': wide workgroups, split-K over workgroups whose partial sums the expand adds), so
 * CI on lavapipe covers the kernels a discrete GPU runs as well as its own ('software', in
 * sgmv-webgpu.test.ts). Without a WebGPU adapter it is skipped (test/needs.ts; a failure under CI=true).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { has } from './needs.js'
import { gridSuite } from './suite.js'

const gpuHere = await has('webgpu')
let rt: Runtime | undefined
beforeAll(async () => {
  if (gpuHere) rt = await createRuntime({ backend: 'webgpu', gpuKernels: 'discrete' })
})
afterAll(() => rt?.dispose())

describe.runIf(gpuHere)('webgpu grid, discrete tiles', () => {
  it('runs the discrete tiles', () => {
    expect(rt!.device).not.toBeNull()
  })
  gridSuite('webgpu', () => rt!, 'webgpu, discrete tiles')
})
