/**
 * Replay a bench/regret.ts result under another profile: for each point, the backend the
 * dispatcher would choose with the profile's rates (and `--set backend.key=value` overrides),
 * and the regret that choice had by the measured forced times of that run (the cost of 'auto'
 * itself, such as the event-loop work a GPU call leaves behind, is not in it).
 * Usage: npx tsx bench/regret-replay.ts FILE.json [--set webgpu.hostGBs=3 ...]
 */
import { readFileSync } from 'node:fs'
import { Dispatcher, featuresOf } from '../src/dispatch/dispatch.js'
import type { Profile } from '../src/dispatch/profile.js'
import { choiceRegret } from './scaling-md.js'
import { quantile } from './timing-threads.js'

const args = process.argv.slice(2)
const run = JSON.parse(readFileSync(args[0], 'utf8')) as {
  profile: Profile
  points: { shape: string; D: number; dtype: 'f32' | 'bf16'; T: number; wasmMs: number; webgpuMs: number | null }[]
}
const profile = structuredClone(run.profile)
for (let i = 1; i < args.length; i++) {
  if (args[i] !== '--set') continue
  const [path, value] = args[++i].split('=')
  const [backend, key] = path.split('.') as ['wasm' | 'webgpu', string]
  ;(profile.backends[backend] as unknown as Record<string, number>)[key] = Number(value)
}
const SHAPES: Record<string, { inF: number; widths: number[]; rank: number }> = {
  'qkv r16': { inF: 4096, widths: [4096, 1024, 1024], rank: 16 },
  'o r16': { inF: 4096, widths: [4096], rank: 16 },
  'gate_up r16': { inF: 4096, widths: [11008, 11008], rank: 16 },
  'down r16': { inF: 11008, widths: [4096], rank: 16 },
  'o r64': { inF: 4096, widths: [4096], rank: 64 },
}
const d = new Dispatcher(
  [
    { name: 'wasm', isSoftware: false },
    { name: 'webgpu', isSoftware: false },
  ],
  profile,
)
const regrets = run.points.map((p) => {
  const s = SHAPES[p.shape]
  const f = featuresOf({
    tokens: p.T,
    adapters: Math.min(p.T, p.D),
    rank: s.rank,
    inFeatures: s.inF,
    outFeatures: s.widths,
    weightDtype: p.dtype,
    resident: 'host',
  })
  const chose = d.choose(f, ['wasm', 'webgpu'])
  // a point forced WebGPU could not hold (webgpuMs null) counts as the GPU's loss
  const r = choiceRegret(chose, p.wasmMs, p.webgpuMs)
  if (r > 1.1)
    console.log(
      `${p.shape} D=${p.D} ${p.dtype} T=${p.T}: ${chose} wasm ${p.wasmMs.toFixed(3)} webgpu ${p.webgpuMs?.toFixed(3) ?? '-'} regret ${r.toFixed(3)}`,
    )
  return r
})
console.log(
  `replayed regret: median ${quantile(regrets, 0.5).toFixed(3)}, max ${Math.max(...regrets).toFixed(3)}, ${regrets.filter((r) => r > 1.1).length} of ${regrets.length} above 1.10, ${regrets.filter((r) => r > 1.25).length} above 1.25`,
)
