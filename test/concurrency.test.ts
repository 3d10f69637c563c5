/**
 * Concurrency on one runtime: 100 concurrent applies over mixed backends and layers give exactly
 * the results of running them one by one; slot writes (setAdapter / clearAdapter) and adapter
 * loads, replacements and unloads during in-flight applies never mix weights within one call:
 * every call equals the float64 reference on the weights as they were when the call was made.
 * Runs on wasm (single-threaded and threaded) and WebGPU (where test/needs.ts finds an adapter).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createRuntime,
  LoraError,
  type BackendName,
  type Layer,
  type LayerOptions,
  type Runtime,
  type TokenAdapters,
} from '../src/index.js'
import { expectDelta, TOLERANCE } from './compare.js'
import { has } from './needs.js'
import { makeWeights, peftConfig, toyModules, weightValues } from './peft-helpers.js'
import { Rng } from './random.js'
import { roundWeights, sgmv, type RefAdapter } from './reference.js'

const gpuHere = await has('webgpu', 'runs its WebGPU parts on wasm only')
let rt: Runtime
let threaded: Runtime
let backends: BackendName[] = []
beforeAll(async () => {
  rt = await createRuntime({ backend: 'auto' })
  backends = rt.backends
  if (gpuHere) expect(backends, `${rt.webgpuUnavailableReason}`).toContain('webgpu')
  threaded = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
})
afterAll(() => {
  rt?.dispose()
  threaded?.dispose()
})

interface LayerModel {
  layer: Layer
  opts: LayerOptions
  widths: number[]
  slots: (RefAdapter | undefined)[]
}

function randomAdapter(
  rng: Rng,
  m: LayerModel,
  rank: number,
): { weights: { rank: number; scale: number; A: Float32Array[]; B: Float32Array[] }; ref: RefAdapter } {
  const inF = m.opts.inFeatures
  const A = m.widths.map(() => rng.array(rank * inF, 1 / Math.sqrt(inF)))
  const B = m.widths.map((n) => rng.array(n * rank, 0.2))
  const scale = 0.5 + rng.next()
  const dtype = m.opts.weightDtype ?? 'f32'
  return {
    weights: { rank, scale, A, B },
    ref: { rank, scale, A: A.map((a) => roundWeights(a, dtype)), B: B.map((b) => roundWeights(b, dtype)) },
  }
}

function makeLayer(r: Runtime, rng: Rng, opts: LayerOptions): LayerModel {
  const widths = typeof opts.outFeatures === 'number' ? [opts.outFeatures] : [...opts.outFeatures]
  const m: LayerModel = { layer: r.createLayer(opts), opts, widths, slots: new Array(opts.maxAdapters).fill(undefined) }
  for (let s = 0; s < opts.maxAdapters; s++) {
    const { weights, ref } = randomAdapter(rng, m, 1 + rng.int(opts.maxRank))
    m.layer.setAdapter(s, weights)
    m.slots[s] = ref
  }
  return m
}

interface Call {
  m: LayerModel
  x: Float32Array
  y0: Float32Array
  ids: Int32Array
  K: number
  backend: BackendName | 'auto'
  label: string
}

function randomCall(rng: Rng, models: LayerModel[], choices: (BackendName | 'auto')[], i: number): Call {
  const m = rng.pick(models)
  const T = rng.int(24)
  const K = 1 + rng.int(2)
  const ids = new Int32Array(T * K).fill(-1)
  const L = m.opts.maxAdapters
  for (let t = 0; t < T; t++) {
    const first = rng.next() < 0.15 ? -1 : rng.int(L)
    ids[t * K] = first
    if (K === 2 && first >= 0 && rng.next() < 0.5) ids[t * K + 1] = (first + 1 + rng.int(L - 1)) % L
  }
  const out = m.widths.reduce((a, b) => a + b, 0)
  const backend = rng.pick(choices)
  return {
    m,
    x: rng.array(T * m.opts.inFeatures),
    y0: rng.array(T * out),
    ids,
    K,
    backend,
    label: `call ${i}: in ${m.opts.inFeatures} out ${m.widths.join('/')} ${m.opts.weightDtype} T=${T} K=${K} ${backend}`,
  }
}

describe('100 concurrent applies on one runtime equal the same calls one by one', () => {
  for (const which of ['auto runtime (wasm + webgpu)', 'threaded wasm runtime'] as const) {
    it(which, async () => {
      const r = which === 'threaded wasm runtime' ? threaded : rt
      const rng = new Rng(which.length)
      const models = [
        makeLayer(r, rng, { inFeatures: 64, outFeatures: 48, maxAdapters: 6, maxRank: 8, weightDtype: 'f32' }),
        makeLayer(r, rng, { inFeatures: 35, outFeatures: [40, 12, 12], maxAdapters: 4, maxRank: 16, weightDtype: 'bf16' }),
        makeLayer(r, rng, { inFeatures: 128, outFeatures: [33, 17], maxAdapters: 8, maxRank: 4, weightDtype: 'f16' }),
      ]
      const choices: (BackendName | 'auto')[] = [...r.backends, 'auto']
      const calls = Array.from({ length: 100 }, (_, i) => randomCall(rng, models, choices, i))
      const together = calls.map((c) => new Float32Array(c.y0))
      await Promise.all(calls.map((c, i) => c.m.layer.apply(c.x, together[i], c.ids, { backend: c.backend, adaptersPerToken: c.K })))
      const alone = calls.map((c) => new Float32Array(c.y0))
      for (let i = 0; i < calls.length; i++) {
        const c = calls[i]
        await c.m.layer.apply(c.x, alone[i], c.ids, { backend: c.backend, adaptersPerToken: c.K })
      }
      for (let i = 0; i < calls.length; i++) {
        const c = calls[i]
        const ref = sgmv({ inFeatures: c.m.opts.inFeatures, sliceWidths: c.m.widths, adapters: c.m.slots }, c.x, c.ids, c.K)
        expectDelta(together[i], c.y0, ref, TOLERANCE[c.m.opts.weightDtype ?? 'f32'], c.label)
        // a forced backend is deterministic: bit for bit the same numbers ('auto' may pick either)
        if (c.backend !== 'auto') expect(together[i], c.label).toEqual(alone[i])
      }
      for (const m of models) m.layer.dispose()
    })
  }
})

describe('slot writes during in-flight applies: each call sees the slots as they were when it was made', () => {
  for (const which of ['auto runtime (wasm + webgpu)', 'threaded wasm runtime'] as const) {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      it(`${which}, schedule ${seed}`, async () => {
        const r = which === 'threaded wasm runtime' ? threaded : rt
        const rng = new Rng(1000 + seed)
        const m = makeLayer(r, rng, {
          inFeatures: 48,
          outFeatures: [32, 16],
          maxAdapters: 4,
          maxRank: 8,
          weightDtype: seed % 2 ? 'f32' : 'bf16',
        })
        const choices: (BackendName | 'auto')[] = [...r.backends, 'auto']
        const log: string[] = []
        const checks: Promise<void>[] = []
        for (let op = 0; op < 40; op++) {
          const u = rng.next()
          if (u < 0.5) {
            const c = randomCall(rng, [m], choices, op)
            // the reference is taken now: the weights at call time
            const snapshot = [...m.slots]
            const empty = [...c.ids].some((id) => id >= 0 && !snapshot[id])
            const y = new Float32Array(c.y0)
            log.push(`${c.label}${empty ? ' (names an empty slot)' : ''}`)
            const p = m.layer.apply(c.x, y, c.ids, { backend: c.backend, adaptersPerToken: c.K })
            checks.push(
              p.then(
                () => {
                  expect(empty, `${c.label} should have failed (empty slot)\n${log.join('\n')}`).toBe(false)
                  expectDelta(
                    y,
                    c.y0,
                    sgmv({ inFeatures: 48, sliceWidths: m.widths, adapters: snapshot }, c.x, c.ids, c.K),
                    TOLERANCE[m.opts.weightDtype!],
                    `${c.label}\nschedule:\n${log.join('\n')}\n`,
                  )
                },
                (e) => {
                  expect(e, c.label).toBeInstanceOf(LoraError)
                  expect(empty && (e as LoraError).code === 'SLOT_EMPTY', `${c.label}: ${(e as Error).message}`).toBe(true)
                  expect(y).toEqual(c.y0)
                },
              ),
            )
          } else if (u < 0.8) {
            const slot = rng.int(4)
            const { weights, ref } = randomAdapter(rng, m, 1 + rng.int(8)) // the rank changes too
            m.layer.setAdapter(slot, weights)
            m.slots[slot] = ref
            log.push(`setAdapter(${slot}, rank ${ref.rank})`)
          } else if (u < 0.9) {
            const slot = rng.int(4)
            m.layer.clearAdapter(slot)
            m.slots[slot] = undefined
            log.push(`clearAdapter(${slot})`)
          } else {
            const wait = rng.int(3)
            log.push(`await (${['microtask', 'macrotask', 'all calls so far'][wait]})`)
            if (wait === 0) await Promise.resolve()
            else if (wait === 1) await new Promise((res) => setTimeout(res, 0))
            else await Promise.all(checks)
          }
        }
        await Promise.all(checks)
        expect(checks.length).toBeGreaterThan(10)
        m.layer.dispose()
      })
    }
  }
})

describe('loadAdapter / unloadAdapter during in-flight rt.apply: each call uses one version of each adapter', () => {
  const MODS = ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']
  const versions = [1, 2, 3, 4].map((seed) => ({
    config: peftConfig({ r: 4 + seed, lora_alpha: 8 }),
    weights: makeWeights(toyModules(4 + seed), seed),
  }))
  // each version's weights and scale (lora_alpha / r) from the generator, by module path
  const expected = [1, 2, 3, 4].map(
    (seed) => new Map([...weightValues(toyModules(4 + seed), seed)].map(([p, w]) => [p, { ...w, scale: 8 / (4 + seed) }])),
  )

  it.each([1, 2, 3, 4, 5])('schedule %i (replace, unload, reload, eviction under a 3-slot pool)', async (seed) => {
    const r = await createRuntime({ backend: backends.includes('webgpu') ? 'auto' : 'wasm', adapterSlots: 3 })
    try {
      const rng = new Rng(77 + seed)
      // name -> acceptable versions for a call made now (several while a load is in flight)
      const names = ['a', 'b', 'c', 'd']
      const current = new Map<string, number>()
      const inFlight = new Map<string, number[]>()
      for (const n of names) {
        const v = rng.int(versions.length)
        await r.loadAdapter(n, versions[v])
        current.set(n, v)
      }
      const log: string[] = []
      const checks: Promise<void>[] = []
      let ok = 0
      for (let op = 0; op < 40; op++) {
        const u = rng.next()
        if (u < 0.6) {
          const module = rng.pick(MODS)
          const T = 1 + rng.int(6)
          // at most 2 distinct adapters per call (the pool has 3 slots per module)
          const pool = [rng.pick(names), rng.pick(names)]
          const tokens: TokenAdapters[] = Array.from({ length: T }, () => (rng.next() < 0.2 ? null : rng.pick(pool)))
          const options = { backend: rng.pick([...r.backends, 'auto'] as const) }
          // versions a call made now may see; -1: not loaded (yet)
          const acceptable = new Map(names.map((n) => [n, inFlight.get(n) ?? [current.get(n) ?? -1]]))
          const missing = tokens.some((t) => typeof t === 'string' && acceptable.get(t)!.includes(-1))
          const mustMiss = tokens.some((t) => typeof t === 'string' && acceptable.get(t)!.every((v) => v === -1))
          const m0 = expected[0].get(module)!
          const x = rng.array(T * m0.inFeatures)
          const y0 = rng.array(T * m0.outFeatures)
          const y = new Float32Array(y0)
          const label = `op ${op}: apply(${module}, ${JSON.stringify(tokens)}, ${options.backend})`
          log.push(label)
          checks.push(
            r.apply(module, x, y, tokens, options).then(
              () => {
                ok++
                expect(mustMiss, `${label} should have failed`).toBe(false)
                // some combination of acceptable versions must explain the result exactly
                const used = [...new Set(tokens.filter((t): t is string => typeof t === 'string'))]
                const combos = used.reduce<Map<string, number>[]>(
                  (acc, n) =>
                    acc.flatMap((c) =>
                      acceptable
                        .get(n)!
                        .filter((v) => v >= 0)
                        .map((v) => new Map([...c, [n, v]])),
                    ),
                  [new Map()],
                )
                const errors = combos.map((combo) => {
                  const ids = Int32Array.from(tokens, (t) => (typeof t === 'string' ? used.indexOf(t) : -1))
                  const adapters = used.map((n) => {
                    const p = expected[combo.get(n)!].get(module)!
                    return { rank: p.rank, scale: p.scale, A: [p.A], B: [p.B] }
                  })
                  try {
                    expectDelta(y, y0, sgmv({ inFeatures: m0.inFeatures, sliceWidths: [m0.outFeatures], adapters }, x, ids), 1e-5, label)
                    return null
                  } catch (e) {
                    return (e as Error).message
                  }
                })
                expect(
                  errors.some((e) => e === null),
                  `${label}: matches no single version of its adapters:\n${errors.join('\n')}\nschedule:\n${log.join('\n')}`,
                ).toBe(true)
              },
              (e) => {
                expect(e, label).toBeInstanceOf(LoraError)
                const code = (e as LoraError).code
                // NOT_FOUND: named an unloaded adapter; OUT_OF_MEMORY: more adapters running at once than the 3 slots hold
                expect(code === 'NOT_FOUND' ? missing : code === 'OUT_OF_MEMORY', `${label}: ${(e as Error).message}`).toBe(true)
                expect(y).toEqual(y0)
              },
            ),
          )
        } else if (u < 0.8) {
          const n = rng.pick(names)
          if (inFlight.has(n)) continue // one load per name at a time: which of two concurrent loads lands last is unspecified
          const v = rng.int(versions.length)
          inFlight.set(n, [...new Set([current.get(n) ?? -1, v])])
          log.push(`loadAdapter(${n}, v${v})`)
          const p = r.loadAdapter(n, versions[v]).then(() => {
            current.set(n, v)
            inFlight.delete(n)
          })
          if (rng.next() < 0.5) await p
          else checks.push(p)
        } else if (u < 0.9) {
          const n = rng.pick(names)
          if (current.has(n) && !inFlight.has(n)) {
            r.unloadAdapter(n)
            current.delete(n)
            log.push(`unloadAdapter(${n})`)
          }
        } else {
          log.push('await all')
          await Promise.all(checks)
        }
      }
      await Promise.all(checks)
      expect(ok).toBeGreaterThan(5)
      const s = r.stats()
      // the resident bytes: at least every fully resident adapter's, at most every loaded one's
      const listed = r.listAdapters()
      expect(s.bytesResident).toBeGreaterThanOrEqual(listed.filter((a) => a.resident).reduce((b, a) => b + a.bytes, 0))
      expect(s.bytesResident).toBeLessThanOrEqual(listed.reduce((b, a) => b + a.bytes, 0))
      expect(s.adapters).toBe(current.size)
    } finally {
      r.dispose()
    }
  })
})
