/**
 * The shared kernel grid (test/grid.ts, also run by the wasm suite) through the public API on the
 * WebGPU backend. In CI a missing adapter fails the file; locally it is skipped with the reason.
 */
import { afterAll, beforeAll, it } from 'vitest'
import type { Runtime } from '../src/index.js'
import { gridSuite, runtimeFor } from './suite.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
let rt: Runtime | undefined
let reason = ''
beforeAll(async () => {
  try {
    rt = await runtimeFor('webgpu')
  } catch (e) {
    if (process.env.CI === 'true') throw e
    reason = (e as Error).message
    console.warn(`webgpu grid skipped: ${reason}`)
  }
})
afterAll(() => rt?.dispose())

it('has a WebGPU runtime (or says why not)', (ctx) => {
  if (!rt) ctx.skip(reason)
})
gridSuite('webgpu', () => {
  if (!rt) throw new Error(`no WebGPU adapter: ${reason}`)
  return rt
})
