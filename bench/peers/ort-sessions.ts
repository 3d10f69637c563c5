/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) with one session per
 * adapter slot whose weights are initializers of its model (peers/onnx-model.ts loraAdapterModel:
 * prepacked for the GEMM when the session is created), run once per segment: x rows and y rows
 * of the segment gathered, Z scattered back into y.
 */
import { loraAdapterModel } from './onnx-model.js'
import { gatherRows, type Peer, scatterRows } from './types.js'

export const ortSessionsPeer: Peer = {
  name: 'onnxruntime-sessions',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    const { inF, widths, out } = layer
    const S = widths.length
    const sessions = await Promise.all(
      layer.slots.map((a) =>
        ort.InferenceSession.create(loraAdapterModel(inF, widths, a.rank, a.scale, a.A, a.B), {
          intraOpNumThreads: 1,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        }),
      ),
    )
    const offsets = widths.map((_, s) => widths.slice(0, s).reduce((p, q) => p + q, 0))
    return {
      async run(x, y, plan) {
        for (let g = 0; g < plan.segSlot.length; g++) {
          const m = plan.segLength[g]
          const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
            X: new ort.Tensor('float32', gatherRows(x, inF, plan, g), [m, inF]),
          }
          for (let s = 0; s < S; s++)
            feeds[`Y_${s}`] = new ort.Tensor('float32', gatherRows(y, out, plan, g, offsets[s], widths[s], out), [m, widths[s]])
          const res = await sessions[plan.segSlot[g]].run(feeds)
          for (let s = 0; s < S; s++) scatterRows(y, out, plan, g, offsets[s], widths[s], res[`Z_${s}`].data as Float32Array)
        }
      },
      dispose() {
        for (const s of sessions) void s.release()
      },
    }
  },
}
