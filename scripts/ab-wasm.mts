/**
 * A/B of two builds of the wasm kernels, interleaved call by call in one process so machine noise
 * hits both alike. Usage: npx tsx scripts/ab-wasm.mts A.wasm B.wasm
 */
import { createRuntime } from '../src/index.ts'
import { Rng } from '../test/random.ts'

const [fa, fb] = process.argv.slice(2)
const rts = [
  await createRuntime({ backend: 'wasm', wasm: { simd: fa, preferRelaxed: false } }),
  await createRuntime({ backend: 'wasm', wasm: { simd: fb, preferRelaxed: false } }),
]
const COLD = 128 << 20
const shapes = [
  ['o r16', 4096, [4096], 16, 1, 8],
  ['qkv r8', 4096, [4096, 1024, 1024], 8, 1, 8],
  ['o r64', 4096, [4096], 64, 1, 8],
  ['o r16', 4096, [4096], 16, 16, 8],
  ['qkv r64', 4096, [4096, 1024, 1024], 64, 1024, 1],
  ['qkv r16', 4096, [4096, 1024, 1024], 16, 64, 1],
  ['gate_up r16', 4096, [11008, 11008], 16, 256, 8],
  ['o r64', 4096, [4096], 64, 256, 8],
  ['qkv r8', 4096, [4096, 1024, 1024], 8, 256, 8],
] as const
for (const [name, inF, widths, rank, T, D] of shapes) {
  for (const dtype of ['f32', 'bf16'] as const) {
    const rng = new Rng(7)
    const out = widths.reduce((a, b) => a + b, 0)
    const bytes = rank * (inF * widths.length + out) * (dtype === 'f32' ? 4 : 2)
    const copies = Math.max(1, Math.ceil(COLD / (D * bytes)))
    const ads = Array.from({ length: D }, () => ({
      rank,
      scale: 2,
      A: widths.map(() => rng.array(rank * inF, 0.02)),
      B: widths.map((n) => rng.array(n * rank, 0.02)),
    }))
    const layers = rts.map((rt) => {
      const l = rt.createLayer({ inFeatures: inF, outFeatures: [...widths], maxAdapters: D * copies, maxRank: rank, weightDtype: dtype })
      for (let c = 0; c < copies; c++) ads.forEach((a, i) => l.setAdapter(c * D + i, a))
      return l
    })
    const x = rng.array(T * inF),
      y = new Float32Array(T * out)
    const calls = Math.max(1, Math.ceil(D / T)) * copies
    const idSets = Array.from({ length: calls }, (_, c) =>
      Int32Array.from({ length: T }, (_, t) => (c % copies) * D + ((Math.floor(c / copies) * T + t) % D)),
    )
    const times: number[][] = [[], []]
    let call = 0
    const reps = T >= 256 ? 30 : 400
    for (let r = 0; r < reps; r++) {
      for (let v = 0; v < 2; v++) {
        const ids = idSets[call++ % calls]
        const t0 = performance.now()
        await layers[v].apply(x, y, ids)
        times[v].push(performance.now() - t0)
      }
    }
    const med = (a: number[]) => a.sort((p, q) => p - q)[a.length >> 1]
    const [ma, mb] = [med(times[0]), med(times[1])]
    const flops = 2 * T * rank * (inF * widths.length + out)
    console.log(
      `${name} T=${T} D=${D} ${dtype}: A ${ma.toFixed(4)} ms (${(flops / ma / 1e6).toFixed(1)} GF/s)  B ${mb.toFixed(4)} ms (${(flops / mb / 1e6).toFixed(1)} GF/s)  B/A speed ${(ma / mb).toFixed(2)}x`,
    )
    layers.forEach((l) => l.dispose())
  }
}
rts.forEach((r) => r.dispose())
