/**
 * Host uploads go in writes of at most WRITE_CHUNK bytes (Dawn stages larger ones in a buffer
 * allocated per write, several times slower): the pieces cover the array exactly, from a view at
 * any offset, and a call on host arrays larger than a chunk still matches the reference.
 */
import { describe, expect, it } from 'vitest'
import { createRuntime } from '../src/index.js'
import { WRITE_CHUNK, writeChunked } from '../src/webgpu/buffers.js'
import { expectDelta, TOLERANCE } from './compare.js'
import { type Case, makeCase } from './grid.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'

const gpuHere = await has('webgpu')

describe('writeChunked', () => {
  it('writes the first n values of a view in pieces of at most WRITE_CHUNK bytes, in order', () => {
    const writes: [number, number, number][] = []
    const queue = {
      writeBuffer: (_b: GPUBuffer, at: number, src: ArrayBuffer, from: number, size: number) => {
        expect(src).toBe(backing)
        writes.push([at, from, size])
      },
    } as unknown as GPUQueue
    const backing = new ArrayBuffer(2 * WRITE_CHUNK + 4096)
    const view = new Float32Array(backing, 64, (2 * WRITE_CHUNK) / 4 + 100)
    const n = view.length - 3
    writeChunked(queue, {} as GPUBuffer, view, n)
    expect(writes).toEqual([
      [0, 64, WRITE_CHUNK],
      [WRITE_CHUNK, 64 + WRITE_CHUNK, WRITE_CHUNK],
      [2 * WRITE_CHUNK, 64 + 2 * WRITE_CHUNK, 4 * 97],
    ])
    writes.length = 0
    writeChunked(queue, {} as GPUBuffer, view, 0)
    expect(writes).toEqual([])
  })

  it.runIf(gpuHere)('host arrays of several chunks on the GPU: y matches the float64 reference', async () => {
    const rt = await createRuntime({ backend: 'webgpu' })
    try {
      // x and y of 1100 x 1024 f32: 4.3 MiB each, two writes apiece
      const c: Case = {
        name: 'chunks',
        seed: 5,
        inFeatures: 1024,
        sliceWidths: [1024],
        slots: 2,
        rank: 4,
        tokens: 1100,
        pattern: 'uniform',
        dtype: 'f32',
        adaptersPerToken: 1,
      }
      const d = makeCase(c)
      expect(d.x.byteLength).toBeGreaterThan(WRITE_CHUNK)
      const layer = rt.createLayer(d.options)
      for (const [slot, a] of d.adapters) layer.setAdapter(slot, a)
      const y = d.y.slice()
      await layer.apply(d.x, y, d.ids)
      expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids), TOLERANCE.f32, c.name)
      layer.dispose()
    } finally {
      rt.dispose()
    }
  })
})
