/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) running a whole call in
 * one graph (peers/onnx-model.ts loraCallModel: one session per segment count, made on first use):
 * the rows of each segment gathered, both products and the scatter-add into y done by onnxruntime
 * in one session.run on the caller's x and y, weights in the form of peers/ort.ts ortWeights.
 * The output is written into a preallocated tensor, then copied into y.
 */
import { loraCallModel } from './onnx-model.js'
import { ORT_OPTIONS, ortWeights } from './ort.js'
import type { Peer } from './types.js'

export const ortGraphPeer: Peer = {
  name: 'onnxruntime-graph',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    type Session = Awaited<ReturnType<typeof ort.InferenceSession.create>>
    type Tensor = InstanceType<typeof ort.Tensor>
    const { inF, widths, out } = layer
    const sessions = new Map<number, Session>()
    const { slots } = ortWeights(ort, layer)
    let z = new Float32Array(0)
    return {
      async run(x, y, plan) {
        const G = plan.segSlot.length
        if (G === 0) return
        let session = sessions.get(G)
        if (!session) sessions.set(G, (session = await ort.InferenceSession.create(loraCallModel(widths, G), ORT_OPTIONS)))
        const T = plan.numTokens
        const rows = BigInt64Array.from(plan.rows, BigInt)
        const feeds: Record<string, Tensor> = {
          X: new ort.Tensor('float32', x.subarray(0, T * inF), [T, inF]),
          Y: new ort.Tensor('float32', y.subarray(0, T * out), [T, out]),
          R: new ort.Tensor('int64', rows, [rows.length, 1]),
        }
        for (let g = 0; g < G; g++) {
          const w = slots[plan.segSlot[g]]
          const m = plan.segLength[g]
          feeds[`I_${g}`] = new ort.Tensor('int64', rows.subarray(plan.segStart[g], plan.segStart[g] + m), [m])
          feeds[`At_${g}`] = w.At
          w.Bt.forEach((t, s) => (feeds[`Bt_${g}_${s}`] = t))
        }
        if (z.length < T * out) z = new Float32Array(T * out)
        await session.run(feeds, { Z: new ort.Tensor('float32', z.subarray(0, T * out), [T, out]) })
        y.set(z.subarray(0, T * out))
      },
      dispose() {
        for (const s of sessions.values()) void s.release()
      },
    }
  },
}
