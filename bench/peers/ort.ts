/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) running the one-segment
 * LoRA model (peers/onnx-model.ts loraModel) once per segment. What keeps it at its best:
 * - weights in MLAS's plain form, made once per adapter (ortWeights: A^T, scale * B^T): no transB
 *   (MLAS would transpose B on every call) and no Mul pass for the scale;
 * - the segment's x and y rows gathered into buffers reused across calls, the outputs written by
 *   onnxruntime into preallocated tensors (no allocation, no copy of the outputs), then scattered
 *   back into y.
 * Weight tensors wrap their arrays: onnxruntime reads them in place, so a call on cold weights
 * reads each adapter from memory once, as multilora does.
 */
import type { SegmentPlan } from '../../src/metadata.js'
import { loraModel } from './onnx-model.js'
import { type CaseLayer, type Peer, scatterRows } from './types.js'

type Ort = typeof import('onnxruntime-node')
type OrtTensor = InstanceType<Ort['Tensor']>

/** The session options of every onnxruntime peer: one thread, every graph optimisation. */
export const ORT_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  enableCpuMemArena: true,
  enableMemPattern: true,
} as const

/** A^T of every slice stacked [in, S*r] and scale * B_s^T [r, n_s] of one adapter. */
export function ortArrays(layer: CaseLayer, slot: number): { at: Float32Array; bt: Float32Array[] } {
  const { inF, widths } = layer
  const a = layer.slots[slot]
  const r = a.rank
  const sr = widths.length * r
  const at = new Float32Array(inF * sr)
  a.A.forEach((A, s) => {
    for (let i = 0; i < r; i++) for (let k = 0; k < inF; k++) at[k * sr + s * r + i] = A[i * inF + k]
  })
  const bt = a.B.map((B, s) => {
    const n = widths[s]
    const t = new Float32Array(r * n)
    for (let j = 0; j < n; j++) for (let i = 0; i < r; i++) t[i * n + j] = a.scale * B[j * r + i]
    return t
  })
  return { at, bt }
}

/** The ORT tensors of every slot (wrapping ortArrays, no copy) and the first column of each slice in y. */
export function ortWeights(ort: Ort, layer: CaseLayer): { slots: { At: OrtTensor; Bt: OrtTensor[] }[]; offsets: number[] } {
  const { inF, widths } = layer
  const slots = layer.slots.map((a, k) => {
    const { at, bt } = ortArrays(layer, k)
    return {
      At: new ort.Tensor('float32', at, [inF, widths.length * a.rank]),
      Bt: bt.map((t, s) => new ort.Tensor('float32', t, [a.rank, widths[s]])),
    }
  })
  return { slots, offsets: sliceOffsets(widths) }
}

export const sliceOffsets = (widths: number[]): number[] => widths.map((_, s) => widths.slice(0, s).reduce((p, q) => p + q, 0))

/**
 * Buffers for one segment's x rows, y rows and outputs per slice, grown to the longest segment
 * seen and reused: `feeds(x, y, plan, g)` gathers the segment and returns the X, Y_s and Z_s tensors.
 */
export function segmentIO(ort: Ort, layer: CaseLayer) {
  const { inF, widths, out } = layer
  const offsets = sliceOffsets(widths)
  let cap = 0
  let xs = new Float32Array(0)
  let ys: Float32Array[] = []
  let zs: Float32Array[] = []
  return {
    offsets,
    gather(x: Float32Array, y: Float32Array, plan: SegmentPlan, g: number) {
      const m = plan.segLength[g]
      if (m > cap) {
        cap = m
        xs = new Float32Array(m * inF)
        ys = widths.map((n) => new Float32Array(m * n))
        zs = widths.map((n) => new Float32Array(m * n))
      }
      const rows = plan.rows.subarray(plan.segStart[g], plan.segStart[g] + m)
      for (let i = 0; i < m; i++) xs.set(x.subarray(rows[i] * inF, (rows[i] + 1) * inF), i * inF)
      const Y: Record<string, OrtTensor> = {}
      const Z: Record<string, OrtTensor> = {}
      widths.forEach((n, s) => {
        for (let i = 0; i < m; i++) ys[s].set(y.subarray(rows[i] * out + offsets[s], rows[i] * out + offsets[s] + n), i * n)
        Y[`Y_${s}`] = new ort.Tensor('float32', ys[s].subarray(0, m * n), [m, n])
        Z[`Z_${s}`] = new ort.Tensor('float32', zs[s].subarray(0, m * n), [m, n])
      })
      return { X: new ort.Tensor('float32', xs.subarray(0, m * inF), [m, inF]), Y, Z }
    },
    /** y rows of segment g, slice s = Z_s (Y_s + the delta). */
    scatter(y: Float32Array, plan: SegmentPlan, g: number) {
      const m = plan.segLength[g]
      widths.forEach((n, s) => scatterRows(y, out, plan, g, offsets[s], n, zs[s].subarray(0, m * n)))
    },
  }
}

export const ortPeer: Peer = {
  name: 'onnxruntime',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    const session = await ort.InferenceSession.create(loraModel(layer.widths.length), ORT_OPTIONS)
    const { slots } = ortWeights(ort, layer)
    const io = segmentIO(ort, layer)
    return {
      async run(x, y, plan) {
        for (let g = 0; g < plan.segSlot.length; g++) {
          const w = slots[plan.segSlot[g]]
          const { X, Y, Z } = io.gather(x, y, plan, g)
          const feeds: Record<string, OrtTensor> = { X, At: w.At, ...Y }
          w.Bt.forEach((t, s) => (feeds[`Bt_${s}`] = t))
          await session.run(feeds, Z)
          io.scatter(y, plan, g)
        }
      },
      dispose() {
        void session.release()
      },
    }
  },
}
