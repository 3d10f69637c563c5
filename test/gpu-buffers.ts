/** GPU buffers for tests: filled at creation, and read back; a grid case's layer on a runtime with a device. */
import { afterAll, beforeAll, expect } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { buildSegments, type SegmentPlan } from '../src/metadata.js'
import { type CallPlan, planCall } from '../src/webgpu/call.js'
import type { WebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import { expectDelta, expectUntouchedRows, TOLERANCE } from './compare.js'
import { makeCase, materialise, type Case } from './grid.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'

/** STORAGE | COPY_SRC | COPY_DST: usable by the kernels and on the host path. */
export const FULL = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST

/** The case's layer with its adapters set, and the device (skips the test without one). */
export function setupCase(rt: Runtime, c: Case, ctx: { skip: (note?: string) => void }) {
  if (!rt.device) ctx.skip(`no WebGPU device: ${rt.webgpuUnavailableReason}`)
  const d = makeCase(c)
  const layer = rt.createLayer(d.options)
  for (const [slot, a] of d.adapters) layer.setAdapter(slot, a)
  return { device: rt.device!, d, layer }
}

/**
 * For a test file, at its top level: `const setup = await caseOnAutoRuntime(c)`. A runtime with
 * backend 'auto' made before its tests and disposed after them, and the setupCase of `c` on it;
 * without a WebGPU adapter (test/needs.ts decides) every test that calls setup is skipped.
 */
export async function caseOnAutoRuntime(c: Case): Promise<(ctx: { skip: (note?: string) => void }) => ReturnType<typeof setupCase>> {
  const gpuHere = await has('webgpu')
  let rt: Runtime
  beforeAll(async () => {
    if (!gpuHere) return
    rt = await createRuntime({ backend: 'auto' })
    expect(rt.device, `${rt.webgpuUnavailableReason}`).not.toBeNull()
  })
  afterAll(() => rt?.dispose())
  return (ctx) => {
    if (!gpuHere) ctx.skip('no WebGPU adapter')
    return setupCase(rt, c, ctx)
  }
}

/** A buffer holding `values`, `padBytes` larger (filled at creation, so it needs no COPY_DST usage). */
export function upload(device: GPUDevice, values: Float32Array | Int32Array, usage: number, padBytes = 0): GPUBuffer {
  const b = device.createBuffer({ size: values.byteLength + padBytes, usage, mappedAtCreation: true })
  new Uint8Array(b.getMappedRange()).set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
  b.unmap()
  return b
}

/** The whole buffer (needs COPY_SRC usage) as f32 values. */
export async function download(device: GPUDevice, b: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: b.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
  const enc = device.createCommandEncoder()
  enc.copyBufferToBuffer(b, 0, staging, 0, b.size)
  device.queue.submit([enc.finish()])
  await staging.mapAsync(GPUMapMode.READ)
  const out = new Float32Array(staging.getMappedRange().slice(0))
  staging.destroy()
  return out
}

/**
 * A call repeated on other GPU buffers, the first x destroyed in between: both results against
 * the float64 reference (the second call must be bound to the new buffers). `check` sees the plan
 * first (which kernels it chose).
 */
export async function checkRebind(
  backend: WebGpuBackend,
  c: Case,
  segmentCap: number | undefined,
  tuning: TileTuning | undefined,
  check: (plan: SegmentPlan, layer: GpuLayer) => void,
): Promise<void> {
  const d = materialise(c)
  const layer = backend.createLayer(d.spec) as GpuLayer
  const device = backend.device
  try {
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    if (tuning) layer.ctx.tuning = tuning
    const plan = buildSegments(d.ids, 1, c.slots, segmentCap)
    check(plan, layer)
    const x2 = Float32Array.from(d.x, (v, i) => (i % 5) * 0.1 - v)
    const x1b = upload(device, d.x, FULL())
    const x2b = upload(device, x2, FULL())
    const y1 = upload(device, d.y, FULL())
    const y2 = upload(device, d.y, FULL())
    await layer.apply(x1b, y1, plan)
    await backend.settled()
    x1b.destroy()
    await layer.apply(x2b, y2, plan)
    expectDelta((await download(device, y1)).subarray(0, d.y.length), d.y, sgmv(d.ref, d.x, d.ids), TOLERANCE.f32, 'y1')
    expectDelta((await download(device, y2)).subarray(0, d.y.length), d.y, sgmv(d.ref, x2, d.ids), TOLERANCE.f32, 'y2')
    for (const b of [x2b, y1, y2]) b.destroy()
  } finally {
    layer.dispose()
  }
}

/**
 * The case on a layer of `backend` with `tuning` (the kernel tests of a forced variant):
 * `expectPlan` checks the kernels chosen; then the result against the float64 reference, rows
 * without an adapter untouched, and the same bits from a second run. Returns the plan and y.
 */
export async function checkTuned(
  backend: WebGpuBackend,
  c: Case,
  tuning: TileTuning | undefined,
  expectPlan: (cp: CallPlan) => void,
): Promise<{ cp: CallPlan; y: Float32Array }> {
  const d = materialise(c)
  const layer = backend.createLayer(d.spec) as GpuLayer
  try {
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    if (tuning) layer.ctx.tuning = tuning
    const plan = buildSegments(d.ids, c.adaptersPerToken, c.slots, 64, d.weights)
    const cp = planCall(layer.ctx, plan)
    expectPlan(cp)
    const y = new Float32Array(d.y)
    await layer.apply(d.x, y, plan)
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids, c.adaptersPerToken, d.weights), TOLERANCE[c.dtype], c.name)
    expectUntouchedRows(y, d.y, d.ids, c.adaptersPerToken, d.spec.outFeatures)
    const again = new Float32Array(d.y)
    await layer.apply(d.x, again, plan)
    expect(new Uint32Array(again.buffer), `${c.name}: same bits`).toEqual(new Uint32Array(y.buffer))
    return { cp, y }
  } finally {
    layer.dispose()
  }
}
