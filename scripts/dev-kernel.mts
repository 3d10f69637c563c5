import { createRuntime } from '../src/index.ts'
import { Rng } from '../test/random.ts'
import { time } from '../bench/timing.ts'
const rt = await createRuntime({ backend: 'wasm' })
const rng = new Rng(1)
for (const [name, inF, widths, rank] of [['qkv r8', 4096, [4096,1024,1024], 8], ['o r16', 4096, [4096], 16], ['o r64', 4096, [4096], 64], ['shrinkonly', 4096, [4], 64], ['expandonly', 4, [4096], 64]] as const) {
  for (const dtype of ['f32', 'bf16'] as const) {
    const D = 8, T = 256
    const out = widths.reduce((a, b) => a + b, 0)
    const layer = rt.createLayer({ inFeatures: inF, outFeatures: [...widths], maxAdapters: D, maxRank: rank, weightDtype: dtype })
    for (let a = 0; a < D; a++) layer.setAdapter(a, { rank, scale: 2, A: widths.map(() => rng.array(rank * inF, 0.02)), B: widths.map((n) => rng.array(n * rank, 0.02)) })
    const x = rng.array(T * inF), y = new Float32Array(T * out)
    const ids = Int32Array.from({ length: T }, (_, t) => t % D)
    const ms = await time(() => layer.apply(x, y, ids), { minMs: 300 })
    const flops = 2 * T * rank * (inF * widths.length + out)
    console.log(name, dtype, ms.toFixed(3), 'ms', (flops / ms / 1e6).toFixed(1), 'GFLOP/s')
    layer.dispose()
  }
}
rt.dispose()
