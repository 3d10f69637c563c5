/** Slot ids given as a GPUBuffer (read back in queue order), with x and y on the GPU or the host. */
import { describe, expect, it } from 'vitest'
import { expectDelta, expectLoraError, TOLERANCE } from './compare.js'
import { caseOnAutoRuntime, download, FULL, upload } from './gpu-buffers.js'
import type { Case } from './grid.js'
import { sgmv } from './reference.js'

const CASE: Case = {
  name: 'gpu ids',
  seed: 33,
  inFeatures: 37,
  sliceWidths: [20, 7],
  slots: 5,
  rank: 3,
  tokens: 9,
  pattern: 'some-none',
  dtype: 'f32',
  adaptersPerToken: 2,
}
const K = CASE.adaptersPerToken

const setup = await caseOnAutoRuntime(CASE)

describe.each(['webgpu', 'wasm', 'auto'] as const)('ids as a GPUBuffer, backend %s', (backend) => {
  it('x, y and ids on the GPU: y matches the reference', async (ctx) => {
    const { device, d, layer } = setup(ctx)
    const xb = upload(device, d.x, FULL())
    const yb = upload(device, d.y, FULL())
    const ib = upload(device, d.ids, FULL(), 64)
    await layer.apply(xb, yb, ib, { backend, adaptersPerToken: K, tokens: CASE.tokens })
    expectDelta(await download(device, yb), d.y, sgmv(d.ref, d.x, d.ids, K), TOLERANCE.f32, backend)
    for (const b of [xb, yb, ib]) b.destroy()
    layer.dispose()
  })

  it('host x and y with GPU ids; the ids read are those written before the call (queue order)', async (ctx) => {
    const { device, d, layer } = setup(ctx)
    const ib = upload(device, new Int32Array(d.ids.length).fill(-1), FULL())
    device.queue.writeBuffer(ib, 0, d.ids as Int32Array<ArrayBuffer>) // queued before the call's read
    const y = d.y.slice()
    await layer.apply(d.x, y, ib, { backend, adaptersPerToken: K, tokens: CASE.tokens })
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids, K), TOLERANCE.f32, backend)
    ib.destroy()
    layer.dispose()
  })
})

describe('ids as a GPUBuffer: bad input leaves y untouched', () => {
  it('rejects a missing or wrong tokens, a short buffer, no COPY_SRC, a destroyed buffer, bad ids in it', async (ctx) => {
    const { device, d, layer } = setup(ctx)
    const y = d.y.slice()
    const ib = upload(device, d.ids, FULL())
    await expectLoraError(() => layer.apply(d.x, y, ib, { adaptersPerToken: K }), 'INVALID_ARGUMENT', ['options.tokens', 'GPUBuffer'])
    await expectLoraError(() => layer.apply(d.x, y, ib, { adaptersPerToken: K, tokens: CASE.tokens + 1 }), 'SHAPE_MISMATCH', [
      'ids',
      'GPUBuffer',
    ])
    await expectLoraError(() => layer.apply(d.x, y, ib, { adaptersPerToken: K, tokens: -1 }), 'OUT_OF_RANGE', ['options.tokens'])
    const short = upload(device, d.ids.subarray(2), FULL())
    await expectLoraError(() => layer.apply(d.x, y, short, { adaptersPerToken: K, tokens: CASE.tokens }), 'SHAPE_MISMATCH', [
      'ids',
      `${d.ids.byteLength}`,
    ])
    const noSrc = upload(device, d.ids, GPUBufferUsage.STORAGE)
    await expectLoraError(() => layer.apply(d.x, y, noSrc, { adaptersPerToken: K, tokens: CASE.tokens }), 'INVALID_ARGUMENT', [
      'ids',
      'COPY_SRC',
    ])
    const bad = d.ids.slice()
    bad[3] = CASE.slots + 7
    const badBuf = upload(device, bad, FULL())
    await expectLoraError(() => layer.apply(d.x, y, badBuf, { adaptersPerToken: K, tokens: CASE.tokens }), 'OUT_OF_RANGE', ['ids[3]'])
    const gone = upload(device, d.ids, FULL())
    gone.destroy()
    await expectLoraError(() => layer.apply(d.x, y, gone, { adaptersPerToken: K, tokens: CASE.tokens }), 'INVALID_ARGUMENT', ['ids'])
    expect(y).toEqual(d.y)
    for (const b of [ib, short, noSrc, badBuf]) b.destroy()
    layer.dispose()
  })

  it('an Int32Array with options.tokens that disagrees is SHAPE_MISMATCH', async (ctx) => {
    const { d, layer } = setup(ctx)
    const y = d.y.slice()
    await expectLoraError(() => layer.apply(d.x, y, d.ids, { adaptersPerToken: K, tokens: 2 }), 'SHAPE_MISMATCH', ['options.tokens'])
    await layer.apply(d.x, y, d.ids, { adaptersPerToken: K, tokens: CASE.tokens, backend: 'wasm' })
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids, K), TOLERANCE.f32, 'wasm')
    layer.dispose()
  })
})
