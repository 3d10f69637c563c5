/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) running the generic LoRA
 * model (peers/onnx-model.ts) once per segment: x rows and y rows of the segment gathered, Z
 * scattered back into y. Weight tensors are created once per slot (they wrap the arrays, no copy).
 */
import { loraModel } from './onnx-model.js'
import { type CaseLayer, gatherRows, type Peer, scatterRows } from './types.js'

export const ortPeer: Peer = {
  name: 'onnxruntime',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    const { inF, widths, out } = layer
    const S = widths.length
    const session = await ort.InferenceSession.create(loraModel(S), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    })
    const { slots, offsets } = ortWeights(ort, layer)
    return {
      async run(x, y, plan) {
        for (let g = 0; g < plan.segSlot.length; g++) {
          const w = slots[plan.segSlot[g]]
          const m = plan.segLength[g]
          const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
            X: new ort.Tensor('float32', gatherRows(x, inF, plan, g), [m, inF]),
            A: w.A,
            scale: w.scale,
          }
          for (let s = 0; s < S; s++) {
            feeds[`B_${s}`] = w.B[s]
            feeds[`Y_${s}`] = new ort.Tensor('float32', gatherRows(y, out, plan, g, offsets[s], widths[s], out), [m, widths[s]])
          }
          const res = await session.run(feeds)
          for (let s = 0; s < S; s++) scatterRows(y, out, plan, g, offsets[s], widths[s], res[`Z_${s}`].data as Float32Array)
        }
      },
      dispose() {
        void session.release()
      },
    }
  },
}

/**
 * The ORT tensors of every slot of a layer (A of all slices stacked [S * r, inF], the scale, B per
 * slice [n_s, r]; B wraps the array, no copy) and the first column of each slice in y.
 */
export function ortWeights(ort: typeof import('onnxruntime-node'), layer: CaseLayer) {
  const { inF, widths } = layer
  const S = widths.length
  const slots = layer.slots.map((a) => {
    const r = a.rank
    const stacked = new Float32Array(S * r * inF)
    a.A.forEach((A, s) => stacked.set(A, s * r * inF))
    return {
      A: new ort.Tensor('float32', stacked, [S * r, inF]),
      scale: new ort.Tensor('float32', Float32Array.of(a.scale), [1]),
      B: a.B.map((B, s) => new ort.Tensor('float32', B, [widths[s], r])),
    }
  })
  const offsets = widths.map((_, s) => widths.slice(0, s).reduce((p, q) => p + q, 0))
  return { slots, offsets }
}
