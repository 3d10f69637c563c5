/**
 * The soak in a short configuration for CI (the full run is `npm run soak`): PEFT adapters on
 * disk, a pool budget of 10% of their bytes (so adapters are evicted and re-read from disk all
 * the time), random mixed batches over every backend, each checked against the float64 reference.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { has } from './needs.js'
import { runSoak } from './soak-run.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
// The memory check compares readings taken after full collections: expose gc in this worker
// (what node --expose-gc does for `npm run soak`).
setFlagsFromString('--expose-gc')
;(globalThis as { gc?: () => void }).gc ??= runInNewContext('gc') as () => void
const gpuHere = await has('webgpu', 'runs without WebGPU')

describe('soak (short)', () => {
  it('300 adapters, 10% budget, 1,500 batches: no wrong result, evictions and reloads happen, memory bounded', async () => {
    const r = await runSoak({ adapters: 300, batches: 1500, budgetFraction: 0.1, concurrency: 2, seed: 7 })
    const summary = JSON.stringify({ ...r, failures: undefined })
    if (gpuHere) expect(r.backends, summary).toContain('webgpu')
    expect(r.failures, summary).toEqual([])
    expect(r.wrong).toBe(0)
    expect(r.errors).toEqual({})
    expect(r.calls).toBe(1500)
    for (const b of [...r.backends, 'auto']) expect(r.byBackend[b], summary).toBeGreaterThan(100)
    // the budget binds: adapters are evicted and re-read from their directories
    expect(r.evictions, summary).toBeGreaterThan(100)
    expect(r.reloads, summary).toBeGreaterThan(100)
    expect(r.maxResidentAdapters, summary).toBeLessThan(100)
    // no leak: RSS after the warm-up grows by less than 64 MB over the run (both readings after a full collection)
    expect(r.gc).toBe(true)
    expect(r.rssGrowthMB, summary).toBeLessThan(64)
  })
})
