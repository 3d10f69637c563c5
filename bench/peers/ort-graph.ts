/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) running every segment of a
 * call in one graph (peers/onnx-model.ts loraSegmentsModel: one session per segment count, made on
 * first use), instead of one session.run per segment (peers/ort.ts). x and y rows of each segment
 * gathered, Z scattered back into y; weight tensors wrap the arrays (no copy).
 */
import { loraSegmentsModel } from './onnx-model.js'
import { ortWeights } from './ort.js'
import { gatherRows, type Peer, scatterRows } from './types.js'

export const ortGraphPeer: Peer = {
  name: 'onnxruntime-graph',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    type Session = Awaited<ReturnType<typeof ort.InferenceSession.create>>
    const { inF, widths, out } = layer
    const S = widths.length
    const sessions = new Map<number, Session>()
    const sessionFor = async (segments: number): Promise<Session> => {
      let s = sessions.get(segments)
      if (!s) {
        s = await ort.InferenceSession.create(loraSegmentsModel(S, segments), {
          intraOpNumThreads: 1,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        })
        sessions.set(segments, s)
      }
      return s
    }
    const { slots, offsets } = ortWeights(ort, layer)
    return {
      async run(x, y, plan) {
        const G = plan.segSlot.length
        if (G === 0) return
        const session = await sessionFor(G)
        const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {}
        for (let g = 0; g < G; g++) {
          const w = slots[plan.segSlot[g]]
          const m = plan.segLength[g]
          feeds[`X_${g}`] = new ort.Tensor('float32', gatherRows(x, inF, plan, g), [m, inF])
          feeds[`A_${g}`] = w.A
          feeds[`scale_${g}`] = w.scale
          for (let s = 0; s < S; s++) {
            feeds[`B_${g}_${s}`] = w.B[s]
            feeds[`Y_${g}_${s}`] = new ort.Tensor('float32', gatherRows(y, out, plan, g, offsets[s], widths[s], out), [m, widths[s]])
          }
        }
        const res = await session.run(feeds)
        for (let g = 0; g < G; g++)
          for (let s = 0; s < S; s++) scatterRows(y, out, plan, g, offsets[s], widths[s], res[`Z_${g}_${s}`].data as Float32Array)
      },
      dispose() {
        for (const s of sessions.values()) void s.release()
      },
    }
  },
}
