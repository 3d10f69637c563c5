/**
 * layer.encode: the LoRA of a small model (8 layers x 4 modules, mixed shapes, dtypes and adapters,
 * GPU-resident x and y) recorded into one encoder the test owns, or into one compute pass of it,
 * submitted once. Each layer's input is the previous layer's last output, so a module sees the y
 * that earlier recorded work wrote; in the pass, a dispatch of the test's own after the model reads
 * the last y. Both tile families run ('software': lavapipe's own; 'discrete': a big GPU's, forced).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { expectDelta, expectLoraError, TOLERANCE } from './compare.js'
import { download, FULL, setupCase, upload } from './gpu-buffers.js'
import type { Case } from './grid.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'

const gpuHere = await has('webgpu')
const D = 48 // hidden width: the last module of a layer writes the next layer's x
const T = 9
const MODULES: Pick<Case, 'sliceWidths' | 'rank' | 'pattern' | 'dtype' | 'adaptersPerToken'>[] = [
  { sliceWidths: [D], rank: 8, pattern: 'uniform', dtype: 'f32', adaptersPerToken: 1 },
  { sliceWidths: [16, 9], rank: 16, pattern: 'zipf', dtype: 'bf16', adaptersPerToken: 2 },
  { sliceWidths: [24, 8, 12], rank: 5, pattern: 'distinct', dtype: 'f16', adaptersPerToken: 1 },
  { sliceWidths: [D], rank: 4, pattern: 'some-none', dtype: 'bf16', adaptersPerToken: 1 },
]

describe.runIf(gpuHere).each(['software', 'discrete'] as const)('encode, %s kernels', (gpuKernels) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'auto', gpuKernels })
    expect(rt.device, `${rt.webgpuUnavailableReason}`).not.toBeNull()
  })
  afterAll(() => rt?.dispose())

  it.for(['encoder', 'pass'] as const)(
    '8 layers x 4 modules into one %s, one submit: every y matches the float64 reference',
    async (target, ctx) => {
      const mods = []
      for (let l = 0; l < 8; l++) {
        for (let m = 0; m < MODULES.length; m++) {
          const c: Case = { ...MODULES[m], name: `layer ${l} module ${m}`, seed: 500 + 4 * l + m, inFeatures: D, slots: 4, tokens: T }
          mods.push({ c, ...setupCase(rt, c, ctx) })
        }
      }
      const device = rt.device!
      let x = upload(device, mods[0].d.x, FULL())
      const buffers = [x]
      const enc = device.createCommandEncoder()
      const pass = target === 'pass' ? enc.beginComputePass() : null
      for (const [i, m] of mods.entries()) {
        const yb = upload(device, m.d.y, FULL())
        buffers.push(yb)
        m.layer.encode(pass ?? enc, x, yb, m.d.ids, { adaptersPerToken: m.c.adaptersPerToken })
        if (i % MODULES.length === MODULES.length - 1) x = yb
      }
      // the caller's own dispatch after the model, in the same pass: it sees the last y updated
      const last = buffers[buffers.length - 1]
      const copy = upload(device, new Float32Array(T * D), FULL())
      if (pass) {
        const pipeline = device.createComputePipeline({
          layout: 'auto',
          compute: {
            module: device.createShaderModule({
              code: `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3<u32>) { if (i.x < ${T * D}u) { dst[i.x] = src[i.x]; } }`,
            }),
            entryPoint: 'main',
          },
        })
        pass.setPipeline(pipeline)
        const entries = [last, copy].map((buffer, binding) => ({ binding, resource: { buffer } }))
        pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }))
        pass.dispatchWorkgroups(Math.ceil((T * D) / 64))
        pass.end()
      }
      device.queue.submit([enc.finish()])
      // the same chain on the host: float64 deltas, each layer's input the previous f32 result
      let xs = mods[0].d.x
      for (const [i, m] of mods.entries()) {
        const delta = sgmv(m.d.ref, xs, m.d.ids, m.c.adaptersPerToken)
        const got = await download(device, buffers[i + 1])
        expectDelta(got.subarray(0, m.d.y.length), m.d.y, delta, TOLERANCE[m.c.dtype], m.c.name)
        if (i % MODULES.length === MODULES.length - 1) xs = Float32Array.from(m.d.y, (v, j) => v + delta[j])
      }
      if (pass) expect(await download(device, copy)).toEqual((await download(device, last)).subarray(0, T * D))
      for (const b of [...buffers, copy]) b.destroy()
      for (const m of mods) m.layer.dispose()
    },
  )

  it('bad input throws before anything is recorded: host arrays, a short y, y = x, an empty slot', async (ctx) => {
    const c: Case = { ...MODULES[0], name: 'bad', seed: 7, inFeatures: D, slots: 4, tokens: T }
    const { device, d, layer } = setupCase(rt, c, ctx)
    const xb = upload(device, d.x, FULL())
    const yb = upload(device, d.y, FULL())
    const short = upload(device, d.y.subarray(1), FULL())
    const enc = device.createCommandEncoder()
    await expectLoraError(() => layer.encode(enc, d.x as unknown as GPUBuffer, yb, d.ids), 'INVALID_ARGUMENT', ['GPUBuffer', 'x'])
    await expectLoraError(() => layer.encode(enc, xb, short, d.ids), 'SHAPE_MISMATCH', ['y', 'GPUBuffer'])
    const square = upload(device, new Float32Array(Math.max(d.x.length, d.y.length)), FULL())
    await expectLoraError(() => layer.encode(enc, square, square, d.ids), 'INVALID_ARGUMENT', ['x and y', 'same GPUBuffer'])
    await expectLoraError(() => layer.apply(square, square, d.ids), 'INVALID_ARGUMENT', ['x and y', 'same GPUBuffer'])
    const pass = enc.beginComputePass()
    await expectLoraError(() => layer.encode(pass, xb, short, d.ids), 'SHAPE_MISMATCH', ['y', 'GPUBuffer'])
    pass.end()
    await expectLoraError(() => layer.encode(null as unknown as GPUCommandEncoder, xb, yb, d.ids), 'INVALID_ARGUMENT', ['encoder'])
    const ids = new Int32Array(T).fill(3)
    layer.clearAdapter(3)
    await expectLoraError(() => layer.encode(enc, xb, yb, ids), 'SLOT_EMPTY', ['ids[0]'])
    device.queue.submit([enc.finish()]) // nothing recorded: y keeps its values
    expect(await download(device, yb)).toEqual(d.y)
    for (const b of [xb, yb, short, square]) b.destroy()
    layer.dispose()
  })
})
