/**
 * The shared kernel grid (test/grid.ts) on the WebGPU backend with the tiles of a big GPU forced
 * ('discrete': wide workgroups, split-K over workgroups whose partial sums the expand adds), so
 * CI on lavapipe covers the kernels a discrete GPU runs as well as its own ('software', in
 * sgmv-webgpu.test.ts). In CI a missing adapter fails the file; locally it is skipped.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { gridSuite } from './suite.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
let rt: Runtime | undefined
let reason = ''
beforeAll(async () => {
  try {
    rt = await createRuntime({ backend: 'webgpu', gpuKernels: 'discrete' })
  } catch (e) {
    if (process.env.CI === 'true') throw e
    reason = (e as Error).message
    console.warn(`webgpu grid (discrete tiles) skipped: ${reason}`)
  }
})
afterAll(() => rt?.dispose())

it('has a WebGPU runtime with the discrete tiles (or says why not)', (ctx) => {
  if (!rt) ctx.skip(reason)
  expect(rt!.device).not.toBeNull()
})
gridSuite(
  'webgpu',
  () => {
    if (!rt) throw new Error(`no WebGPU adapter: ${reason}`)
    return rt
  },
  'webgpu, discrete tiles',
)
