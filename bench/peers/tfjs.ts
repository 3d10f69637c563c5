/**
 * Peer: @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD, one thread). Per segment: H = X At (A of all
 * slices stacked and stored transposed once, [in, S*r]), then per slice D_s = H_s Bt_s
 * (Bt_s = scale * B_s^T [r, n_s], made once: no pass for the scale) and y rows += D_s.
 * Pre-transposed weights are its fast form: matMul with transpose flags is 4-10x slower there.
 */
import type { Peer, PeerRunner } from './types.js'
import { gatherRows } from './types.js'

type Tf = typeof import('@tensorflow/tfjs-core')
let ready: Promise<Tf> | null = null

async function loadTf(): Promise<Tf> {
  const tf = await import('@tensorflow/tfjs-core')
  const wasm = await import('@tensorflow/tfjs-backend-wasm')
  wasm.setThreadsCount(1)
  await tf.setBackend('wasm')
  await tf.ready()
  return tf
}

function transpose(m: Float32Array, rows: number, cols: number, out: Float32Array, colOffset: number, outCols: number): void {
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * outCols + colOffset + i] = m[i * cols + j]
}

export const tfjsPeer: Peer = {
  name: 'tfjs-wasm',
  async setup(layer) {
    const tf = await (ready ??= loadTf())
    const { inF, widths, out } = layer
    const S = widths.length
    const weights = layer.slots.map((a) => {
      const r = a.rank
      const at = new Float32Array(inF * S * r)
      a.A.forEach((A, s) => transpose(A, r, inF, at, s * r, S * r))
      return {
        r,
        At: tf.tensor2d(at, [inF, S * r]),
        Bt: a.B.map((B, s) => {
          const bt = new Float32Array(r * widths[s])
          transpose(B, widths[s], r, bt, 0, widths[s])
          for (let i = 0; i < bt.length; i++) bt[i] *= a.scale
          return tf.tensor2d(bt, [r, widths[s]])
        }),
      }
    })
    // read results through a view of the wasm heap: dataSync() copies with HEAPU8.slice, which
    // measured 30+ ms for 4 MB here (the peer's fastest read path, not a handicap)
    const backend = tf.backend() as unknown as { typedArrayFromHeap(t: unknown): Float32Array }
    const runner: PeerRunner = {
      run(x, y, plan) {
        for (let g = 0; g < plan.segSlot.length; g++) {
          const w = weights[plan.segSlot[g]]
          const m = plan.segLength[g]
          tf.tidy(() => {
            const X = tf.tensor2d(gatherRows(x, inF, plan, g), [m, inF])
            const H = tf.matMul(X, w.At)
            let col = 0
            for (let s = 0; s < S; s++) {
              const d = backend.typedArrayFromHeap(tf.matMul(S === 1 ? H : tf.slice(H, [0, s * w.r], [m, w.r]), w.Bt[s]))
              const n = widths[s]
              for (let i = 0; i < m; i++) {
                const o = plan.rows[plan.segStart[g] + i] * out + col
                for (let j = 0; j < n; j++) y[o + j] += d[i * n + j]
              }
              col += n
            }
          })
        }
      },
      dispose() {
        for (const w of weights) {
          w.At.dispose()
          for (const b of w.Bt) b.dispose()
        }
      },
    }
    return runner
  },
}
