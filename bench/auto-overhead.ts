/**
 * What backend 'auto' costs on small calls that it sends to wasm: layer.apply with 'auto' against
 * forced 'wasm' on the same runtime and layer (o_proj 4096 -> 4096, r16, host arrays, warm weights),
 * T = 1..16, interleaved call by call (auto, wasm, wasm, auto, ...) so that both see the same
 * machine load. Two settings: only small calls, and a forced WebGPU call (T = 64) before every pair,
 * as in a serving loop whose large calls run on the GPU (and in bench/regret.ts).
 * Reports the median us per call of each and the difference.
 * Usage: npx tsx bench/auto-overhead.ts [--pairs N] [--dtype f32|bf16]
 */
import { createRuntime, type BackendChoice, type WeightDtype } from '../src/index.js'
import { Rng } from '../test/random.js'
import { quantile } from './timing-threads.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const pairs = Number(flag('--pairs') ?? 400)
const dtype = (flag('--dtype') ?? 'bf16') as WeightDtype

const rt = await createRuntime({ backend: 'auto' })
console.log(`backends ${rt.backends.join(', ')}; profile ${rt.profile?.kind}; ${dtype}; ${pairs} pairs per setting`)
const rng = new Rng(7)
const inF = 4096
const out = 4096
const rank = 16
const layer = rt.createLayer({ inFeatures: inF, outFeatures: out, maxAdapters: 4, maxRank: rank, weightDtype: dtype })
for (let s = 0; s < 4; s++) layer.setAdapter(s, { rank, scale: 2, A: [rng.array(rank * inF, 0.02)], B: [rng.array(out * rank, 0.02)] })
const bigX = rng.array(64 * inF)
const bigY = new Float32Array(64 * out)
const bigIds = Int32Array.from({ length: 64 }, (_, t) => t % 4)
const gpu = rt.backends.includes('webgpu')

for (const withGpu of gpu ? [false, true] : [false]) {
  for (const T of [1, 2, 4, 8, 16]) {
    const x = rng.array(T * inF)
    const y = new Float32Array(T * out)
    const ids = Int32Array.from({ length: T }, (_, t) => t % 4)
    const chose = rt.explain({ tokens: T, adapters: Math.min(T, 4), rank, inFeatures: inF, outFeatures: out, weightDtype: dtype })
    const times: Record<'auto' | 'wasm', number[]> = { auto: [], wasm: [] }
    const call = async (b: BackendChoice): Promise<number> => {
      const t0 = performance.now()
      await layer.apply(x, y, ids, { backend: b })
      return performance.now() - t0
    }
    for (let i = 0; i < 20; i++) await call('auto'), await call('wasm') // warm-up
    for (let i = 0; i < pairs; i++) {
      if (withGpu) await layer.apply(bigX, bigY, bigIds, { backend: 'webgpu' })
      const order: ('auto' | 'wasm')[] = i % 2 ? ['auto', 'wasm'] : ['wasm', 'auto']
      for (const b of order) times[b].push(await call(b))
    }
    const a = quantile(times.auto, 0.5) * 1000
    const w = quantile(times.wasm, 0.5) * 1000
    console.log(
      `${withGpu ? 'after GPU calls' : 'small calls only'} T=${T} (auto chooses ${chose.backend}): auto ${a.toFixed(1)} us, wasm ${w.toFixed(1)} us, auto - wasm ${(a - w).toFixed(1)} us`,
    )
  }
}
layer.dispose()
rt.dispose()
