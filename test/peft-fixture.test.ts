/**
 * Real PEFT adapters (test/fixtures/peft/tiny-llama-public, written by peft 0.21) against PEFT's
 * own mixed-batch forward pass: y = base + delta on every LoRA-wrapped module.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAdapter, type ParsedAdapter } from '../src/peft/adapter.js'
import { readSafetensors } from '../src/peft/safetensors.js'
import { readAdapterSource } from '../src/peft/source.js'
import { AdapterPool } from '../src/pool.js'
import type { Layer, LayerOptions } from '../src/types.js'
import { expectDelta } from './compare.js'
import { fakeFactory } from './fake-layer.js'
import { sgmv, type RefAdapter } from './reference.js'

const DIR = fileURLToPath(new URL('./fixtures/peft/tiny-llama-public/', import.meta.url))
const TOL = 1e-5

interface Manifest {
  token_adapter: string[]
  modules: string[]
  adapters: Record<string, { r: number; alpha: number; targets: string[]; dtype?: string }>
}

let manifest: Manifest
let oracle: Map<string, Float32Array>
const adapters = new Map<string, ParsedAdapter>()

beforeAll(async () => {
  manifest = JSON.parse(await readFile(`${DIR}manifest.json`, 'utf8'))
  const file = readSafetensors(new Uint8Array(await readFile(`${DIR}oracle.safetensors`)), 'oracle.safetensors')
  oracle = new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array]))
  for (const name of Object.keys(manifest.adapters)) {
    const files = await readAdapterSource(`${DIR}adapters/${name}`)
    adapters.set(name, parseAdapter(files.config, files.weights, name, files.fileNames))
  }
})

/** The oracle's x, base and y of one module. */
function io(module: string): { x: Float32Array; base: Float32Array; y: Float32Array } {
  const get = (s: string): Float32Array => {
    const t = oracle.get(`${module}.${s}`)
    if (!t) throw new Error(`oracle has no ${module}.${s}`)
    return t
  }
  return { x: get('x'), base: get('base'), y: get('y') }
}

describe('PEFT fixture: parsing', () => {
  it('both adapters parse with the manifest ranks, scales, targets and dtypes', () => {
    for (const [name, m] of Object.entries(manifest.adapters)) {
      const ad = adapters.get(name)!
      expect(ad.dtype).toBe(m.dtype === 'f16' ? 'F16' : 'F32')
      const targeted = manifest.modules.filter((p) => m.targets.some((t) => p.endsWith(`.${t}`)))
      expect([...ad.modules.keys()].sort()).toEqual(targeted.sort())
      for (const [path, mod] of ad.modules) {
        expect(mod.rank, path).toBe(m.r)
        expect(mod.scale, path).toBe(m.alpha / m.r)
        const { x, y } = io(path)
        const T = manifest.token_adapter.length
        expect(mod.inFeatures * T).toBe(x.length)
        expect(mod.outFeatures * T).toBe(y.length)
      }
      expect(ad.ignored).toEqual([])
    }
  })

  it('a file: URL source gives the same adapter as the directory path', async () => {
    const files = await readAdapterSource(pathToFileURL(`${DIR}adapters/math`))
    const viaUrl = parseAdapter(files.config, files.weights, 'math')
    expect([...viaUrl.modules.keys()]).toEqual([...adapters.get('math')!.modules.keys()])
    const [path, mod] = [...viaUrl.modules][0]
    expect(mod.A).toEqual(adapters.get('math')!.modules.get(path)!.A)
  })
})

describe('PEFT fixture: y = base + delta against PEFT (relative error of the delta <= 1e-5)', () => {
  it('float64 reference sgmv on every module, mixed token assignment', () => {
    const names = Object.keys(manifest.adapters)
    for (const module of manifest.modules) {
      const { x, base, y } = io(module)
      // One slot per adapter that targets the module; other adapters' tokens get no delta (as PEFT).
      const slots: (RefAdapter | undefined)[] = names.map((n) => {
        const m = adapters.get(n)!.modules.get(module)
        return m && { rank: m.rank, scale: m.scale, A: [m.A], B: [m.B] }
      })
      const ids = Int32Array.from(manifest.token_adapter, (a) => {
        const s = names.indexOf(a)
        return s >= 0 && slots[s] ? s : -1
      })
      const inF = x.length / ids.length
      const delta = sgmv({ inFeatures: inF, sliceWidths: [y.length / ids.length], adapters: slots }, x, ids)
      expectDelta(y, base, delta, TOL, module)
      // Tokens with no delta: PEFT's output is exactly its base output.
      const out = y.length / ids.length
      ids.forEach((id, t) => {
        if (id < 0) expect(y.subarray(t * out, (t + 1) * out)).toEqual(base.subarray(t * out, (t + 1) * out))
      })
    }
  })

  /** Load both adapters into a pool and apply every module with the manifest's assignment. */
  async function checkPool(createLayer: (o: LayerOptions) => Layer): Promise<void> {
    const pool = new AdapterPool({ createLayer })
    for (const name of Object.keys(manifest.adapters)) await pool.loadAdapter(name, `${DIR}adapters/${name}`)
    const tokens = manifest.token_adapter.map((a) => (a === '__base__' ? null : a))
    for (const module of manifest.modules) {
      const { x, base, y } = io(module)
      const got = new Float32Array(base)
      await pool.apply(module, x, got, tokens)
      const delta = new Float64Array(y.length)
      for (let i = 0; i < y.length; i++) delta[i] = y[i] - base[i]
      expectDelta(got, base, delta, TOL, `pool ${module}`)
    }
    const s = pool.stats()
    expect(s.misses).toBe(0) // everything was uploaded at load time
    expect(s.hits).toBe(4 * 2 * 2 + 3 * 2) // q,k,v,o x 2 layers x 2 adapters + gate,up,down x 2 layers x code
    pool.dispose()
  }

  it('through the AdapterPool on a reference layer', () => checkPool(fakeFactory().createLayer))

  describe('through the AdapterPool on the real wasm runtime', () => {
    let rt: { createLayer(o: LayerOptions): Layer; dispose(): void } | null = null
    let reason = ''
    beforeAll(async () => {
      try {
        const { createRuntime } = await import('../src/runtime.js')
        rt = await createRuntime({ backend: 'wasm' })
      } catch (e) {
        reason = (e as Error).message
      }
    })
    afterAll(() => rt?.dispose())
    it('matches PEFT', async (ctx) => {
      if (!rt) ctx.skip(`wasm runtime unavailable: ${reason}`)
      await checkPool((o) => rt!.createLayer(o))
    })
  })
})
