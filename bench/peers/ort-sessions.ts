/**
 * Peer: onnxruntime-node (native MLAS CPU kernels, one intra-op thread) with one session per
 * adapter slot whose weights are initializers of its model (peers/onnx-model.ts loraAdapterModel,
 * weights in the form of peers/ort.ts ortArrays), so onnxruntime prepacks them for MLAS when the
 * session is created, as for a model with one adapter baked in. Run once per segment, with the
 * reused gather buffers and preallocated outputs of peers/ort.ts.
 */
import { loraAdapterModel } from './onnx-model.js'
import { ORT_OPTIONS, ortArrays, segmentIO } from './ort.js'
import type { Peer } from './types.js'

export const ortSessionsPeer: Peer = {
  name: 'onnxruntime-sessions',
  async setup(layer) {
    const ort = await import('onnxruntime-node')
    const { inF, widths } = layer
    const sessions: Awaited<ReturnType<typeof ort.InferenceSession.create>>[] = []
    for (let k = 0; k < layer.slots.length; k++) {
      const { at, bt } = ortArrays(layer, k)
      sessions.push(await ort.InferenceSession.create(loraAdapterModel(inF, widths, layer.slots[k].rank, at, bt), ORT_OPTIONS))
    }
    const io = segmentIO(ort, layer)
    return {
      async run(x, y, plan) {
        for (let g = 0; g < plan.segSlot.length; g++) {
          const { X, Y, Z } = io.gather(x, y, plan, g)
          await sessions[plan.segSlot[g]].run({ X, ...Y }, Z)
          io.scatter(y, plan, g)
        }
      },
      dispose() {
        for (const s of sessions) void s.release()
      },
    }
  },
}
