/** GPU-resident x and y through the public layer.apply: on the GPU, and through the host on wasm. */
import { describe, expect, it } from 'vitest'
import { expectDelta, expectLoraError, TOLERANCE } from './compare.js'
import { caseOnAutoRuntime, download, FULL, upload } from './gpu-buffers.js'
import type { Case } from './grid.js'
import { sgmv } from './reference.js'

const CASE: Case = {
  name: 'resident',
  seed: 21,
  inFeatures: 70,
  sliceWidths: [24, 9],
  slots: 4,
  rank: 6,
  tokens: 11,
  pattern: 'some-none',
  dtype: 'bf16',
  adaptersPerToken: 2,
}

const setup = await caseOnAutoRuntime(CASE)

describe.each(['webgpu', 'wasm', 'auto'] as const)('GPU buffers through layer.apply, backend %s', (backend) => {
  it('y is updated on the device and matches the reference', async (ctx) => {
    const { device, d, layer } = setup(ctx)
    const xb = upload(device, d.x, FULL())
    const yb = upload(device, d.y, FULL())
    await layer.apply(xb, yb, d.ids, { backend, adaptersPerToken: CASE.adaptersPerToken })
    expectDelta(await download(device, yb), d.y, sgmv(d.ref, d.x, d.ids, CASE.adaptersPerToken), TOLERANCE.bf16, backend)
    xb.destroy()
    yb.destroy()
    layer.dispose()
  })
})

describe('GPU buffers: bad input', () => {
  it('a y buffer too small is SHAPE_MISMATCH; a y without COPY_DST on wasm is INVALID_ARGUMENT; y untouched', async (ctx) => {
    const { device, d, layer } = setup(ctx)
    const xb = upload(device, d.x, FULL())
    const small = upload(device, d.y.subarray(1), FULL())
    await expectLoraError(() => layer.apply(xb, small, d.ids, { adaptersPerToken: 2 }), 'SHAPE_MISMATCH', ['y', 'GPUBuffer'])
    const noDst = upload(device, d.y, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC)
    await expectLoraError(() => layer.apply(xb, noDst, d.ids, { backend: 'wasm', adaptersPerToken: 2 }), 'INVALID_ARGUMENT', ['COPY_DST'])
    expect(await download(device, noDst)).toEqual(d.y)
    for (const b of [xb, small, noDst]) b.destroy()
    layer.dispose()
  })
})
