/**
 * Two builds of the wasm kernels side by side in one process: each a runtime of its own (one
 * thread), the same adapters and x, calls alternating A B B A ... so that both see the same machine
 * load, weights cold (each call takes the next of >= 96 MiB of layer copies, and 64 MiB are read
 * before it). For kernel changes: build the old tree, keep its build/multilora-simd.wasm (or
 * -relaxed), build the new one, compare; or compare the plain and relaxed builds of one tree.
 * Runs under any Node (e.g. `node --import tsx` of another Node's binary) to see how each V8
 * compiles the kernels. Shapes are in = out = 4096, one slice, host arrays (rt.hostArray, no
 * copies): T tokens over B adapters in the batch of D loaded, rank r.
 * Reports the median ms of each and new / old.
 * Usage: npx tsx bench/ab-builds.ts OLD.wasm NEW.wasm [--dtype f32|bf16|f16] [--shapes "T,r,D,B;..."] [--calls N]
 */
import { createRuntime, type Layer, type WeightDtype } from '../src/index.js'
import { Rng } from '../test/random.js'
import { quantile } from './timing-threads.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const [oldPath, newPath] = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'))
if (!oldPath || !newPath)
  throw new Error('usage: npx tsx bench/ab-builds.ts OLD.wasm NEW.wasm [--dtype f32|bf16|f16] [--shapes "T,r,D,B;..."] [--calls N]')
const dtype = (flag('--dtype') ?? 'bf16') as WeightDtype
const shapes = (flag('--shapes') ?? '1,16,8,1;16,64,16,4;64,16,32,16;256,16,64,32').split(';').map((s) => s.split(',').map(Number))
const callsArg = flag('--calls')
const F = 4096
const COLD_BYTES = 96 << 20

const rts = [
  await createRuntime({ backend: 'wasm', wasm: { simd: oldPath } }),
  await createRuntime({ backend: 'wasm', wasm: { simd: newPath } }),
]
const flush = new Float64Array((64 << 20) / 8)
let sink = 0
console.log(`${process.version} (V8 ${process.versions.v8}); ${dtype}; old ${oldPath}, new ${newPath}`)
for (const [T, rank, D, B] of shapes) {
  const rng = new Rng(T * 131 + rank)
  const copies = Math.max(2, Math.ceil(COLD_BYTES / (D * 2 * rank * F * (dtype === 'f32' ? 4 : 2))))
  const adapters = Array.from({ length: D }, () => ({ rank, scale: 0.5, A: rng.array(rank * F), B: rng.array(F * rank) }))
  const x = rng.array(T * F)
  const sides = rts.map((rt) => {
    const layers: Layer[] = []
    for (let c = 0; c < copies; c++) {
      const l = rt.createLayer({ inFeatures: F, outFeatures: F, maxAdapters: D, maxRank: rank, weightDtype: dtype })
      adapters.forEach((a, slot) => l.setAdapter(slot, a))
      layers.push(l)
    }
    const hx = rt.hostArray(T * F)
    const hy = rt.hostArray(T * F)
    hx.array.set(x)
    return { layers, hx, hy, ms: [] as number[] }
  })
  const calls = Number(callsArg ?? (T >= 256 ? 24 : 120))
  const ids = new Int32Array(T)
  for (let i = 0; i < calls + 4; i++) {
    // A B B A: each side as often first and second
    const side = sides[(i + (i >> 1)) & 1]
    for (let t = 0; t < T; t++) ids[t] = (Math.floor((t * B) / T) + i * B) % D
    for (let j = 0; j < flush.length; j += 8) sink += flush[j]
    const t0 = performance.now()
    await side.layers[i % copies].apply(side.hx.array, side.hy.array, ids, { backend: 'wasm' })
    if (i >= 4) side.ms.push(performance.now() - t0) // the first calls run in V8's baseline tier
  }
  const [o, n] = sides.map((s) => quantile(s.ms, 0.5))
  console.log(`T=${T} r${rank} ${D}/${B}: old ${o.toFixed(3)} ms, new ${n.toFixed(3)} ms, new / old ${(n / o).toFixed(3)}`)
  for (const s of sides) {
    for (const l of s.layers) l.dispose()
    s.hx.release()
    s.hy.release()
  }
}
for (const rt of rts) rt.dispose()
if (sink < 0) console.log(sink)
