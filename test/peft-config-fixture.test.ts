/**
 * PEFT's config semantics against PEFT itself (test/fixtures/peft/tiny-llama-config, written by
 * scripts/peft-fixtures.py with peft 0.21): use_rslora, rank_pattern / alpha_pattern, a regex
 * target_modules, layers_to_transform with and without layers_pattern, exclude_modules, scales
 * other than 2, and F32 / BF16 / F16 tensors. The expected values come from PEFT (its outputs, and
 * the r and scaling it applied to each module), and the weights from a reader of this file's own:
 * nothing from parseAdapter. Every adapter is loaded into pool layers of every weight dtype and
 * applied on every backend.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { parseAdapter } from '../src/peft/adapter.js'
import { AdapterPool } from '../src/pool/pool.js'
import type { LayerOptions, WeightDtype } from '../src/types.js'
import type { TensorToWrite } from '../src/peft/safetensors.js'
import { expectDelta, expectLoraError, TOLERANCE } from './compare.js'
import { roundWeights, sgmv, type RefAdapter } from './reference.js'
import { has } from './needs.js'
import { readTensors } from './read-tensors.js'

const DIR = fileURLToPath(new URL('./fixtures/peft/tiny-llama-config/', import.meta.url))

interface PeftModule {
  r: number
  scaling: number
  lora_alpha: number
}
interface Manifest {
  token_adapter: string[]
  modules: string[]
  adapters: Record<string, { dtype: 'f32' | 'bf16' | 'f16'; modules: Record<string, PeftModule> }>
}

let manifest: Manifest
let oracle: Map<string, Float32Array>
/** adapter -> module -> PEFT's A [r * in] and B [out * r], as stored. */
const stored = new Map<string, Map<string, { A: Float32Array; B: Float32Array }>>()
const files = new Map<string, { config: string; weights: Uint8Array }>()

beforeAll(async () => {
  manifest = JSON.parse(await readFile(`${DIR}manifest.json`, 'utf8'))
  oracle = new Map([...readTensors(new Uint8Array(await readFile(`${DIR}oracle.safetensors`)))].map(([k, t]) => [k, t.data]))
  for (const name of Object.keys(manifest.adapters)) {
    const config = await readFile(`${DIR}adapters/${name}/adapter_config.json`, 'utf8')
    const weights = new Uint8Array(await readFile(`${DIR}adapters/${name}/adapter_model.safetensors`))
    files.set(name, { config, weights })
    const mods = new Map<string, { A: Float32Array; B: Float32Array }>()
    for (const [key, t] of readTensors(weights)) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(key)
      if (!m) throw new Error(`unexpected key ${key}`)
      const e = mods.get(m[1]) ?? { A: new Float32Array(), B: new Float32Array() }
      e[m[2] as 'A' | 'B'] = t.data
      mods.set(m[1], e)
    }
    stored.set(name, mods)
  }
})

function io(module: string): { x: Float32Array; base: Float32Array; y: Float32Array } {
  const get = (s: string): Float32Array =>
    oracle.get(`${module}.${s}`) ??
    (() => {
      throw new Error(`oracle has no ${module}.${s}`)
    })()
  return { x: get('x'), base: get('base'), y: get('y') }
}

describe('PEFT config semantics: what parseAdapter reads equals what PEFT applied', () => {
  it('the fixture covers what it claims: rslora, patterns, 16-bit tensors, scales other than 2', () => {
    const scales = Object.values(manifest.adapters).flatMap((a) => Object.values(a.modules).map((m) => m.scaling))
    expect(scales.some((s) => s !== 2 && !Number.isInteger(s))).toBe(true)
    expect(new Set(Object.values(manifest.adapters).map((a) => a.dtype))).toEqual(new Set(['f32', 'bf16', 'f16']))
    // rank_pattern gives one adapter two ranks
    expect(Object.values(manifest.adapters).some((a) => new Set(Object.values(a.modules).map((m) => m.r)).size > 1)).toBe(true)
  })

  for (const name of ['rs', 'pat', 'rx', 'lt', 'l0']) {
    it(`${name}: the modules PEFT wrapped, with PEFT's r and scaling, and the stored weights`, () => {
      const { config, weights } = files.get(name)!
      const ad = parseAdapter(config, weights, name)
      const peft = manifest.adapters[name]
      expect([...ad.modules.keys()].sort()).toEqual(Object.keys(peft.modules).sort())
      expect(ad.dtype).toBe({ f32: 'F32', bf16: 'BF16', f16: 'F16' }[peft.dtype])
      for (const [path, m] of ad.modules) {
        expect(m.rank, path).toBe(peft.modules[path].r)
        expect(m.scale, path).toBe(peft.modules[path].scaling)
        expect(m.A, path).toEqual(stored.get(name)!.get(path)!.A)
        expect(m.B, path).toEqual(stored.get(name)!.get(path)!.B)
      }
    })
  }

  it("the float64 reference with PEFT's scaling and the stored weights reproduces PEFT's outputs", () => {
    for (const module of manifest.modules) {
      const { x, base, y } = io(module)
      const { adapters, ids } = slotsFor(module, 'f32')
      const T = ids.length
      expectDelta(y, base, sgmv({ inFeatures: x.length / T, sliceWidths: [y.length / T], adapters }, x, ids), 1e-5, module)
    }
  })
})

/** One slot per adapter (manifest order) holding its weights of `module` rounded to `dtype`; ids of the mixed batch. */
function slotsFor(module: string, dtype: WeightDtype): { adapters: (RefAdapter | undefined)[]; ids: Int32Array; exact: boolean[] } {
  const names = Object.keys(manifest.adapters)
  const exact: boolean[] = []
  const adapters = names.map((n, s) => {
    const p = manifest.adapters[n].modules[module]
    const w = stored.get(n)!.get(module)
    exact[s] = true
    if (!p || !w) return undefined
    const A = roundWeights(w.A, dtype),
      B = roundWeights(w.B, dtype)
    exact[s] = A.every((v, i) => v === w.A[i]) && B.every((v, i) => v === w.B[i])
    return { rank: p.r, scale: p.scaling, A: [A], B: [B] }
  })
  const ids = Int32Array.from(manifest.token_adapter, (a) => {
    const s = names.indexOf(a)
    return s >= 0 && adapters[s] ? s : -1
  })
  return { adapters, ids, exact }
}

const gpuHere = await has('webgpu', 'runs on wasm only')

describe('every adapter in pool layers of every weight dtype, on every backend, against PEFT', () => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'auto' })
    if (gpuHere) expect(rt.backends, `${rt.webgpuUnavailableReason}`).toContain('webgpu')
  })
  afterAll(() => rt?.dispose())

  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    it(`${dtype} layers`, async () => {
      const pool = new AdapterPool({ createLayer: (o: LayerOptions) => rt.createLayer({ ...o, weightDtype: dtype }) })
      try {
        for (const [name, f] of files) await pool.loadAdapter(name, { config: f.config, weights: f.weights })
        const tokens = manifest.token_adapter.map((a) => (a === '__base__' ? null : a))
        let rowsAgainstPeft = 0
        for (const backend of rt.backends) {
          for (const module of manifest.modules) {
            const { x, base, y } = io(module)
            const T = tokens.length,
              out = y.length / T
            // rows of adapters whose weights the dtype holds exactly: PEFT's own delta; other rows:
            // the float64 reference on the weights rounded to the dtype, with PEFT's scaling
            const { adapters, ids, exact } = slotsFor(module, dtype)
            const ref = sgmv({ inFeatures: x.length / T, sliceWidths: [out], adapters }, x, ids)
            const delta = new Float64Array(y.length)
            for (let t = 0; t < T; t++) {
              const fromPeft = ids[t] < 0 || exact[ids[t]]
              if (fromPeft && ids[t] >= 0) rowsAgainstPeft++
              for (let j = 0; j < out; j++) delta[t * out + j] = fromPeft ? y[t * out + j] - base[t * out + j] : ref[t * out + j]
            }
            const got = new Float32Array(base)
            await pool.apply(module, x, got, tokens, { backend })
            expectDelta(got, base, delta, TOLERANCE[dtype], `${dtype} ${backend} ${module}`)
            ids.forEach((id, t) => {
              if (id < 0)
                expect(got.subarray(t * out, (t + 1) * out), `${module} token ${t}`).toEqual(base.subarray(t * out, (t + 1) * out))
            })
          }
        }
        // each dtype compares some of its 16-bit or f32 kernels with PEFT's output directly
        expect(rowsAgainstPeft).toBeGreaterThan(0)
      } finally {
        pool.dispose()
      }
    })
  }
})

/** The tensors of a weight file (as F32) plus a zero tensor `key` of `shape`. */
function withExtra(weights: Uint8Array, key: string, shape: number[]): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>()
  for (const [k, t] of readTensors(weights)) out.set(k, { dtype: 'F32', shape: t.shape, data: t.data })
  out.set(key, { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) })
  return out
}

describe('configs PEFT writes with options multilora refuses', () => {
  const refusedAsConfig = [
    'use_dora',
    'lora_bias',
    'alora_invocation_tokens',
    'use_qalora',
    'trainable_token_indices',
    'layer_replication',
    'use_bdlora',
    'arrow_config',
  ]
  for (const option of refusedAsConfig) {
    it(`${option}: UNSUPPORTED_FEATURE naming it`, async () => {
      const config = await readFile(`${DIR}refused/${option}/adapter_config.json`, 'utf8')
      await expectLoraError(() => parseAdapter(config, files.get('rx')!.weights, option), 'UNSUPPORTED_FEATURE', [option])
    })
  }

  for (const option of ['bias_all', 'bias_lora_only']) {
    it(`${option}: the base biases PEFT saves with it are UNSUPPORTED_FEATURE; without any (a base with no bias) the adapter is plain LoRA`, async () => {
      const config = JSON.parse(await readFile(`${DIR}refused/${option}/adapter_config.json`, 'utf8'))
      expect(config.bias).toBe(option === 'bias_all' ? 'all' : 'lora_only')
      // the rx weights, as if saved with this bias setting from a model without biases
      const rx = JSON.parse(files.get('rx')!.config)
      const plain = parseAdapter(
        { ...config, target_modules: rx.target_modules, r: rx.r, lora_alpha: rx.lora_alpha },
        files.get('rx')!.weights,
        option,
      )
      expect([...plain.modules.keys()].sort()).toEqual(Object.keys(manifest.adapters.rx.modules).sort())
      // with a base bias saved beside the LoRA weights
      const { writeSafetensors } = await import('../src/peft/safetensors.js')
      const withBias = writeSafetensors(
        withExtra(files.get('rx')!.weights, 'base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias', [104]),
      )
      await expectLoraError(
        () => parseAdapter({ ...config, target_modules: rx.target_modules, r: rx.r, lora_alpha: rx.lora_alpha }, withBias, option),
        'UNSUPPORTED_FEATURE',
        ['base_layer.bias'],
      )
    })
  }

  it('modules_to_save with the saved module: UNSUPPORTED_FEATURE', async () => {
    const config = await readFile(`${DIR}refused/modules_to_save/adapter_config.json`, 'utf8')
    expect(JSON.parse(config).modules_to_save).toEqual(['lm_head'])
    const { writeSafetensors } = await import('../src/peft/safetensors.js')
    const weights = writeSafetensors(withExtra(files.get('rx')!.weights, 'base_model.model.lm_head.weight', [96, 104]))
    await expectLoraError(
      () => parseAdapter({ ...JSON.parse(config), target_modules: ['q_proj', 'v_proj', 'gate_proj'], r: 6 }, weights, 'mts'),
      'UNSUPPORTED_FEATURE',
      ['modules_to_save'],
    )
  })

  it('target_modules null: every module in the file is wrapped', () => {
    const rx = JSON.parse(files.get('rx')!.config)
    const ad = parseAdapter({ ...rx, target_modules: null }, files.get('rx')!.weights, 'all')
    expect([...ad.modules.keys()].sort()).toEqual(Object.keys(manifest.adapters.rx.modules).sort())
    expect(ad.ignored).toEqual([])
  })
})
