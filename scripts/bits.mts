/**
 * A fingerprint of the outputs: every case of the test grid (two seeds) and the named edge cases,
 * plus a few serving-sized calls, run through the public API on each backend (wasm on one thread,
 * wasm on 2 threads, WebGPU where there is an adapter); prints one SHA-256 of y's bytes per
 * (backend, case). Two trees give the same lines when their kernels give the same bits.
 * Usage: npx tsx scripts/bits.mts > bits.txt
 */
import { createHash } from 'node:crypto'
import { createRuntime, type Runtime } from '../src/index.js'
import { caseGrid, type Case, edgeCases, makeCase } from '../test/grid.js'

const serving: Case[] = [1, 16, 64, 257].flatMap((tokens) =>
  (['f32', 'bf16', 'f16'] as const).flatMap((dtype) =>
    [1, 2].map((adaptersPerToken) => ({
      name: `QKV 4096/1024/1024 r16 T${tokens} ${dtype} K${adaptersPerToken}`,
      inFeatures: 4096,
      sliceWidths: [4096, 1024, 1024],
      slots: 8,
      rank: 16,
      tokens,
      pattern: 'uniform' as const,
      dtype,
      adaptersPerToken,
      seed: 1000 + tokens,
    })),
  ),
)
const cases = [...caseGrid(2), ...edgeCases(), ...serving]

async function run(label: string, rt: Runtime, backend: 'wasm' | 'webgpu'): Promise<void> {
  for (const c of cases) {
    const d = makeCase(c)
    const layer = rt.createLayer(d.options)
    for (const [slot, a] of d.adapters) layer.setAdapter(slot, a)
    const y = d.y.slice()
    await layer.apply(d.x, y, d.ids, { backend, adaptersPerToken: c.adaptersPerToken })
    console.log(`${label}\t${c.name}\t${createHash('sha256').update(new Uint8Array(y.buffer)).digest('hex')}`)
    layer.dispose?.()
  }
}

const one = await createRuntime({ backend: 'wasm' })
await run('wasm', one, 'wasm')
one.dispose()
const two = await createRuntime({ backend: 'wasm', threads: 2 })
if (two.threads === 2) await run('wasm-2-threads', two, 'wasm')
two.dispose()
const gpu = await createRuntime({ backend: 'auto' })
if (gpu.backends.includes('webgpu')) await run('webgpu', gpu, 'webgpu')
gpu.dispose()
