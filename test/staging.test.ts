/**
 * Host arrays through mapped staging buffers (the default on hardware adapters, forced here):
 * x and y copied into one mapped buffer, moved on the queue, the buffer mapped again and reused.
 * Mixed residency, repeated calls (buffers come back to the pool), sizes across pool buckets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import { expectDelta, TOLERANCE } from './compare.js'
import { download, FULL, upload } from './gpu-buffers.js'
import { type Case, materialise } from './grid.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'

const gpuHere = await has('webgpu')
const base: Case = {
  name: 'staged',
  seed: 11,
  inFeatures: 96,
  sliceWidths: [40, 24],
  slots: 4,
  rank: 8,
  tokens: 7,
  pattern: 'uniform',
  dtype: 'bf16',
  adaptersPerToken: 1,
}

describe.runIf(gpuHere)('uploads through mapped staging buffers', () => {
  let backend: WebGpuBackend
  beforeAll(async () => {
    backend = await createWebGpuBackend({ uploads: 'staging' })
  })
  afterAll(() => backend?.dispose())

  it('host x and y, repeated and at other sizes; host x with GPU y and GPU x with host y: every y matches the reference', async () => {
    const device = backend.device
    for (const [i, c] of [base, base, { ...base, seed: 12, tokens: 300 }, base, { ...base, seed: 13, tokens: 1 }].entries()) {
      const d = materialise(c)
      const layer = backend.createLayer(d.spec)
      d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
      const plan = buildSegments(d.ids, 1, c.slots)
      const delta = sgmv(d.ref, d.x, d.ids)
      const y = d.y.slice()
      await layer.apply(d.x, y, plan)
      expectDelta(y, d.y, delta, TOLERANCE[c.dtype], `call ${i}, host x and y`)
      const yb = upload(device, d.y, FULL())
      await layer.apply(d.x, yb, plan)
      expectDelta((await download(device, yb)).subarray(0, d.y.length), d.y, delta, TOLERANCE[c.dtype], `call ${i}, GPU y`)
      const xb = upload(device, d.x, FULL())
      const y2 = d.y.slice()
      await layer.apply(xb, y2, plan)
      expectDelta(y2, d.y, delta, TOLERANCE[c.dtype], `call ${i}, GPU x`)
      for (const b of [xb, yb]) b.destroy()
      layer.dispose()
    }
  })

  it('x of a threaded runtime (a view of shared memory) is copied, not handed to the GPU as is', async () => {
    const d = materialise(base)
    const layer = backend.createLayer(d.spec)
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const shared = new Float32Array(new SharedArrayBuffer(d.x.byteLength + 64), 64, d.x.length)
    shared.set(d.x)
    const y = d.y.slice()
    await layer.apply(shared, y, buildSegments(d.ids, 1, base.slots))
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids), TOLERANCE[base.dtype], 'shared x')
    expect(shared).toEqual(d.x)
    layer.dispose()
  })
})
