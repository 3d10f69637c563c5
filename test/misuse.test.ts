/**
 * API misuse, argument by argument: every public call of src/index.ts with each argument replaced
 * by wrong types, wrong lengths, NaN, Infinity, negative or fractional sizes, BigInt and Symbol
 * must throw (or, for promise-returning calls, reject with) a LoraError, leave outputs and loaded
 * state untouched, and never throw synchronously from a call that returns a promise.
 * test/api.test.ts checks messages of a few named cases; this file sweeps the whole surface.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildSegments,
  createRuntime,
  LoraError,
  readSafetensors,
  writeSafetensors,
  type Layer,
  type LoraErrorCode,
  type Runtime,
  type TokenAdapters,
} from '../src/index.js'
import { expectDelta } from './compare.js'
import { makeWeights, peftConfig, toyModules, weightValues } from './peft-helpers.js'
import { sgmv } from './reference.js'
import { FUZZ_SEED, Rng } from './random.js'

/** Values wrong for almost any argument. */
const JUNK: [string, unknown][] = [
  ['undefined', undefined],
  ['null', null],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['-1', -1],
  ['0.5', 0.5],
  ['"1"', '1'],
  ['true', true],
  ['{}', {}],
  ['[]', []],
  ['1n', 1n],
  ['Symbol', Symbol('s')],
  ['() => 1', () => 1],
  ['Float64Array', new Float64Array(4)],
  ['Int32Array', new Int32Array(4)],
  ['2**53', 2 ** 53],
]
/**
 * Optional arguments and fields treat null like undefined (`?? default`): null is left out of
 * their junk, and so are arrays for option objects (an array is an object with no fields).
 */
const OPTIONAL_JUNK = (): [string, unknown][] => JUNK.filter(([, v]) => v !== undefined && v !== null)
const notObject = ([, v]: [string, unknown]): boolean => typeof v !== 'object' || v === null
/** Sizes that are not positive safe integers in range. */
const BAD_SIZES: [string, unknown][] = [
  ['0', 0],
  ['-1', -1],
  ['1.5', 1.5],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['"4"', '4'],
  ['null', null],
  ['1n', 1n],
  ['2**31', 2 ** 31],
  ['{}', {}],
]

/**
 * `call` must fail with a LoraError (code among `codes` when given). A call that returns a promise
 * must reject, not throw synchronously.
 */
async function expectRefused(label: string, call: () => unknown, codes?: LoraErrorCode[], returnsPromise = false): Promise<LoraError> {
  let result: unknown
  try {
    result = call()
  } catch (e) {
    if (returnsPromise) throw new Error(`${label}: threw synchronously instead of rejecting: ${(e as Error)?.message}`)
    return check(label, e, codes)
  }
  if (!(result instanceof Promise)) throw new Error(`${label}: did not throw (returned ${String(result)})`)
  try {
    await result
  } catch (e) {
    return check(label, e, codes)
  }
  throw new Error(`${label}: resolved instead of rejecting`)
}
function check(label: string, e: unknown, codes?: LoraErrorCode[]): LoraError {
  if (!(e instanceof LoraError))
    throw new Error(`${label}: threw ${(e as Error)?.name} instead of LoraError: ${(e as Error)?.message}`, { cause: e })
  if (codes) expect(codes, `${label}: ${e.message}`).toContain(e.code)
  return e
}

let rt: Runtime
const IN = 6
const OUT = [5, 3]
const rng = new Rng(5)
const adapter = (rank = 2) => ({
  rank,
  scale: 0.5,
  A: [rng.array(rank * IN), rng.array(rank * IN)],
  B: [rng.array(5 * rank), rng.array(3 * rank)],
})
const Q = 'model.layers.0.self_attn.q_proj'
const peft = { config: peftConfig(), weights: makeWeights(toyModules(8)) }
/** Adapter 'a' on Q, from the generator (r 8, lora_alpha 16: scale 2). */
const qWeights = weightValues(toyModules(8)).get(Q)!

/** What rt.apply(module, x, y, tokens) must add to y with adapter 'a' loaded: its delta on Q, nothing on another path. */
function expectedDelta(module: unknown, x: Float32Array, tokens: TokenAdapters[]): Float64Array {
  const out = qWeights.outFeatures
  if (module !== Q) return new Float64Array(tokens.length * out)
  const ids = Int32Array.from(tokens, (t) => (t === 'a' || (Array.isArray(t) && t.includes('a')) ? 0 : -1))
  return sgmv(
    { inFeatures: qWeights.inFeatures, sliceWidths: [out], adapters: [{ rank: 8, scale: 2, A: [qWeights.A], B: [qWeights.B] }] },
    x,
    ids,
  )
}

beforeAll(async () => {
  rt = await createRuntime({ backend: 'wasm' })
  await rt.loadAdapter('a', peft)
})
afterAll(() => rt?.dispose())

function newLayer(): Layer {
  const l = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: 3, maxRank: 4 })
  l.setAdapter(0, adapter(2))
  l.setAdapter(1, adapter(4))
  return l
}

describe('createRuntime: every option', () => {
  const bad: [string, Record<string, unknown>][] = [
    ...OPTIONAL_JUNK().map(([n, v]) => [`backend ${n}`, { backend: v }] as [string, Record<string, unknown>]),
    // any number >= 0 is a budget (Infinity: unlimited; a fraction of a byte is harmless)
    ...JUNK.filter(([, v]) => v !== undefined && !(typeof v === 'number' && v >= 0)).map(
      ([n, v]) => [`memoryBudget ${n}`, { memoryBudget: v }] as [string, Record<string, unknown>],
    ),
    ...[...BAD_SIZES, ['65537', 65537] as [string, unknown]].map(
      ([n, v]) => [`adapterSlots ${n}`, { adapterSlots: v }] as [string, Record<string, unknown>],
    ),
    ...JUNK.filter(([, v]) => v !== undefined && !(typeof v === 'object' && v !== null) && typeof v !== 'function').map(
      ([n, v]) => [`wasm ${n}`, { wasm: v }] as [string, Record<string, unknown>],
    ),
    ...JUNK.filter(([, v]) => v !== undefined).map(([n, v]) => [`profile ${n}`, { profile: v }] as [string, Record<string, unknown>]),
    ...OPTIONAL_JUNK().map(([n, v]) => [`threads ${n}`, { threads: v }] as [string, Record<string, unknown>]),
  ]
  it.each(bad)('%s', async (label, over) => {
    await expectRefused(label, () => createRuntime({ backend: 'wasm', ...over } as never), undefined, true)
  })
  // an array is an object: createRuntime([]) is createRuntime({}) with defaults, so it is left out
  it.each(JUNK.filter(([, v]) => v !== undefined && (typeof v !== 'object' || v === null)))('options %s', async (label, v) => {
    await expectRefused(label, () => createRuntime(v as never), ['INVALID_ARGUMENT'], true)
  })
})

describe('rt.createLayer: every option', () => {
  const valid = { inFeatures: 4, outFeatures: [4, 2], maxAdapters: 2, maxRank: 2, weightDtype: 'f32' }
  const cases: [string, unknown][] = []
  for (const key of ['inFeatures', 'maxAdapters', 'maxRank'] as const)
    for (const [n, v] of BAD_SIZES) cases.push([`${key} ${n}`, { ...valid, [key]: v }])
  for (const [n, v] of [
    ...BAD_SIZES,
    ['[]', []],
    ['[4, 0]', [4, 0]],
    ['[4, NaN]', [4, NaN]],
    // biome-ignore lint/suspicious/noSparseArray: a sparse array is one of the bad inputs
    ['sparse', [4, , 2]],
    ['[2**24, 2**24]', [2 ** 24, 2 ** 24]],
  ] as [string, unknown][])
    cases.push([`outFeatures ${n}`, { ...valid, outFeatures: v }])
  for (const [n, v] of OPTIONAL_JUNK()) cases.push([`weightDtype ${n}`, { ...valid, weightDtype: v }])
  cases.push(
    ['maxAdapters 65537', { ...valid, maxAdapters: 65537 }],
    ['maxRank 4097', { ...valid, maxRank: 4097 }],
    ['inFeatures 2**24+1', { ...valid, inFeatures: 2 ** 24 + 1 }],
  )
  for (const [n, v] of JUNK.filter(([, v]) => typeof v !== 'object' || v === null)) cases.push([`options ${n}`, v])
  it.each(cases)('%s', async (label, options) => {
    await expectRefused(label, () => rt.createLayer(options as never))
  })
})

describe('layer.setAdapter / clearAdapter: every argument; the slot keeps its adapter', () => {
  const cases: [string, unknown, () => unknown][] = []
  for (const [n, v] of [...BAD_SIZES.filter(([n]) => n !== '0'), ['3 (= maxAdapters)', 3]] as [string, unknown][])
    cases.push([`slot ${n}`, v, () => adapter(2)])
  for (const [n, v] of [...BAD_SIZES, ['5 (> maxRank)', 5]] as [string, unknown][])
    cases.push([`rank ${n}`, 1, () => ({ ...adapter(2), rank: v })])
  for (const [n, v] of JUNK.filter(([, v]) => typeof v !== 'number' || !Number.isFinite(v)))
    cases.push([`scale ${n}`, 1, () => ({ ...adapter(2), scale: v })])
  for (const part of ['A', 'B'] as const) {
    for (const [n, v] of JUNK) cases.push([`${part} ${n}`, 1, () => ({ ...adapter(2), [part]: v })])
    for (const [n, v] of JUNK)
      cases.push([
        `${part}[1] ${n}`,
        1,
        () => {
          const a = adapter(2)
          ;(a[part] as unknown[])[1] = v
          return a
        },
      ])
    cases.push([
      `${part} with 3 slices`,
      1,
      () => {
        const a = adapter(2)
        ;(a[part] as unknown[]).push(a[part][0])
        return a
      },
    ])
    cases.push([
      `${part}[0] one value short`,
      1,
      () => {
        const a = adapter(2)
        a[part][0] = a[part][0].subarray(1)
        return a
      },
    ])
    cases.push([
      `${part}[0] one value long`,
      1,
      () => {
        const a = adapter(2)
        a[part][0] = new Float32Array(a[part][0].length + 1)
        return a
      },
    ])
    for (const bad of [NaN, Infinity, -Infinity])
      cases.push([
        `${part}[1] holds ${bad}`,
        1,
        () => {
          const a = adapter(2)
          a[part][1][1] = bad
          return a
        },
      ])
  }
  for (const [n, v] of JUNK.filter(([, v]) => typeof v !== 'object' || v === null || Array.isArray(v)))
    cases.push([`adapter ${n}`, 1, () => v])
  it.each(cases)('%s', async (label, slot, make) => {
    const layer = newLayer()
    const x = rng.array(2 * IN)
    const ids = Int32Array.of(1, 0)
    const y0 = new Float32Array(16)
    await layer.apply(x, y0, ids)
    await expectRefused(label, () => layer.setAdapter(slot as number, make() as never))
    const y1 = new Float32Array(16)
    await layer.apply(x, y1, ids)
    expect(y1).toEqual(y0)
    expect([layer.hasAdapter(0), layer.hasAdapter(1), layer.hasAdapter(2)]).toEqual([true, true, false])
    layer.dispose()
  })

  it.each([...BAD_SIZES.filter(([n]) => n !== '0'), ['3', 3], ['"0"', '0']] as [string, unknown][])(
    'clearAdapter slot %s',
    async (label, slot) => {
      const layer = newLayer()
      await expectRefused(label, () => layer.clearAdapter(slot as number), ['INVALID_ARGUMENT', 'OUT_OF_RANGE'])
      expect([layer.hasAdapter(0), layer.hasAdapter(1)]).toEqual([true, true])
      layer.dispose()
    },
  )
})

describe('layer.apply: every argument; y untouched', () => {
  const T = 3
  const x = rng.array(T * IN)
  const ids = Int32Array.of(0, -1, 1)
  const cases: [string, (y: Float32Array) => unknown[]][] = []
  for (const [n, v] of [...JUNK, ['x short', x.subarray(1)], ['x long', new Float32Array(T * IN + 1)]] as [string, unknown][])
    cases.push([`x ${n}`, (y) => [v, y, ids]])
  for (const [n, v] of [...JUNK, ['y short', new Float32Array(T * 8 - 1)], ['y long', new Float32Array(T * 8 + 1)]] as [string, unknown][])
    cases.push([`y ${n}`, () => [x, v, ids]])
  for (const [n, v] of [
    ...JUNK,
    ['Uint32Array', Uint32Array.of(0, 1, 1)],
    ['plain array', [0, -1, 1]],
    ['2 ids', Int32Array.of(0, 1)],
    ['id 3 (empty slot 2? no: out of range)', Int32Array.of(0, 3, 1)],
    ['id 2 (empty slot)', Int32Array.of(0, 2, 1)],
    ['id -2', Int32Array.of(0, -2, 1)],
    ['id 2**31-1', Int32Array.of(0, 2 ** 31 - 1, 1)],
  ] as [string, unknown][])
    cases.push([`ids ${n}`, (y) => [x, y, v]])
  for (const [n, v] of OPTIONAL_JUNK().filter(notObject)) cases.push([`options ${n}`, (y) => [x, y, ids, v]])
  for (const [n, v] of OPTIONAL_JUNK()) cases.push([`options.backend ${n}`, (y) => [x, y, ids, { backend: v }]])
  for (const [n, v] of [...BAD_SIZES.filter(([, v]) => v !== null), ['65', 65], ['2 (does not divide 3 ids)', 2]] as [string, unknown][])
    cases.push([`options.adaptersPerToken ${n}`, (y) => [x, y, ids, { adaptersPerToken: v }]])
  cases.push(['webgpu on a wasm runtime', (y) => [x, y, ids, { backend: 'webgpu' }]])
  it.each(cases)('%s', async (label, args) => {
    const layer = newLayer()
    const y = rng.array(T * 8)
    const before = new Float32Array(y)
    await expectRefused(label, () => (layer.apply as (...a: unknown[]) => unknown)(...args(y)), undefined, true)
    expect(y).toEqual(before)
    layer.dispose()
  })
})

describe('rt.loadAdapter / unloadAdapter / pin / unpin: every argument; the adapter list unchanged', () => {
  const names = JUNK.filter(([, v]) => typeof v !== 'string').concat([['""', '']])
  const sources: [string, unknown][] = [
    ...JUNK.filter(([, v]) => typeof v !== 'object' || v === null),
    ['{}', {}],
    ['{ config }', { config: peft.config }],
    ['{ weights }', { weights: peft.weights }],
    ['weights []', { config: peft.config, weights: [] }],
    ['weights [5]', { config: peft.config, weights: [5] }],
    ['weights string', { config: peft.config, weights: 'x' }],
    ['weights Float32Array', { config: peft.config, weights: new Float32Array(8) }],
    ['config 5', { config: 5, weights: peft.weights }],
    ['config "{"', { config: '{', weights: peft.weights }],
    ['missing directory', '/nonexistent/adapter'],
    ['a file, not a directory', '/etc/hostname'],
    ['data: URL', 'data:text/plain,x'],
    ['bad URL', 'http://['],
    ['URL object to nowhere', new URL('file:///nonexistent/x')],
  ]
  it.each(names)('loadAdapter name %s', async (label, name) => {
    const before = rt.listAdapters()
    await expectRefused(label, () => rt.loadAdapter(name as string, peft), ['INVALID_ARGUMENT'], true)
    expect(rt.listAdapters()).toEqual(before)
  })
  it.each(sources)('loadAdapter source %s', async (label, source) => {
    const before = rt.listAdapters()
    await expectRefused(label, () => rt.loadAdapter('b', source as never), undefined, true)
    expect(rt.listAdapters()).toEqual(before)
  })
  it.each(names.concat([['unknown name', 'nope']]))('unloadAdapter / pin / unpin %s', async (label, name) => {
    const before = rt.listAdapters()
    await expectRefused(`unload ${label}`, () => rt.unloadAdapter(name as string), ['NOT_FOUND', 'INVALID_ARGUMENT'])
    await expectRefused(`pin ${label}`, () => rt.pin(name as string), ['NOT_FOUND', 'INVALID_ARGUMENT'], true)
    await expectRefused(`unpin ${label}`, () => rt.unpin(name as string), ['NOT_FOUND', 'INVALID_ARGUMENT'])
    expect(rt.listAdapters()).toEqual(before)
  })
})

describe('rt.apply: every argument; y untouched', () => {
  const T = 2
  const x = rng.array(T * 12)
  const cases: [string, (y: Float32Array) => unknown[]][] = []
  for (const [n, v] of JUNK.filter(([, v]) => typeof v !== 'string')) cases.push([`module ${n}`, (y) => [v, x, y, ['a', null]]])
  for (const [n, v] of [...JUNK, ['x short', x.subarray(1)]] as [string, unknown][]) cases.push([`x ${n}`, (y) => [Q, v, y, ['a', null]]])
  for (const [n, v] of [...JUNK, ['y short', new Float32Array(T * 12 - 1)]] as [string, unknown][])
    cases.push([`y ${n}`, () => [Q, x, v, ['a', null]]])
  for (const [n, v] of [
    ...JUNK.filter(([, v]) => !Array.isArray(v)),
    ['one token short', ['a']],
    ['unknown adapter', ['a', 'zzz']],
    ['[5, null]', [5, null]],
    ['[[null], null]', [[null], null]],
    ['same adapter twice', [['a', 'a'], null]],
    ['[{}, null]', [{}, null]],
  ] as [string, unknown][])
    cases.push([`adapters ${n}`, (y) => [Q, x, y, v]])
  for (const [n, v] of JUNK.filter(([, v]) => v !== undefined).filter(notObject))
    cases.push([`options ${n}`, (y) => [Q, x, y, ['a', null], v]])
  for (const [n, v] of OPTIONAL_JUNK()) cases.push([`options.backend ${n}`, (y) => [Q, x, y, ['a', null], { backend: v }]])
  it.each(cases)('%s', async (label, args) => {
    const y = rng.array(T * 12)
    const before = new Float32Array(y)
    const list = rt.listAdapters()
    await expectRefused(label, () => (rt.apply as (...a: unknown[]) => unknown)(...args(y)), undefined, true)
    expect(y).toEqual(before)
    expect(rt.listAdapters()).toEqual(list)
  })

  it('random junk in any argument (fast-check): LoraError, y untouched', async () => {
    let accepted = 0
    const junk = fc.oneof(fc.anything(), fc.constantFrom(...JUNK.map(([, v]) => v)))
    await fc.assert(
      fc.asyncProperty(fc.nat(4), junk, async (pos, v) => {
        const y = rng.array(T * 12)
        const before = new Float32Array(y)
        const args: unknown[] = [Q, x, y, ['a', null], {}]
        args[pos] = v
        // the few junk values that happen to be valid (options with unknown keys, a module path
        // no adapter targets) must then give the right result
        try {
          await (rt.apply as (...a: unknown[]) => Promise<void>)(...args)
        } catch (e) {
          check(`rt.apply arg ${pos} = ${fc.stringify(v)}`, e)
          expect(y).toEqual(before)
          return
        }
        accepted++
        expectDelta(
          y,
          before,
          expectedDelta(args[0], args[1] as Float32Array, args[3] as TokenAdapters[]),
          1e-5,
          `accepted rt.apply arg ${pos} = ${fc.stringify(v)}`,
        )
      }),
      { numRuns: 500, seed: FUZZ_SEED },
    )
    expect(accepted).toBeGreaterThan(0) // options junk such as {} or { x: 1 } is valid
  })
})

describe('rt.explain, rt.calibrate, buildSegments, readSafetensors, writeSafetensors', () => {
  const call = { tokens: 4, inFeatures: 64, outFeatures: 64, rank: 8, adapters: 2 }
  const explain: [string, unknown][] = [
    ...JUNK.filter(([, v]) => typeof v !== 'object' || v === null).map(([n, v]) => [`call ${n}`, v] as [string, unknown]),
  ]
  for (const key of ['tokens', 'inFeatures', 'outFeatures', 'rank']) {
    for (const [n, v] of JUNK.filter(([, v]) => v !== undefined)) explain.push([`${key} ${n}`, { ...call, [key]: v }])
  }
  for (const key of ['adapters', 'adaptersPerToken', 'weightDtype', 'resident']) {
    for (const [n, v] of OPTIONAL_JUNK()) explain.push([`${key} ${n}`, { ...call, [key]: v }])
  }
  it.each(explain)('explain %s', async (label, c) => {
    await expectRefused(label, () => rt.explain(c as never))
  })

  // calibrate() (options undefined) is valid: left out
  it.each([
    ...JUNK.filter(([, v]) => v === null || (v !== undefined && typeof v !== 'object')).map(([n, v]) => [`options ${n}`, v]),
    ...JUNK.filter(([, v]) => v !== undefined && !(typeof v === 'number' && v > 0)).map(([n, v]) => [`budgetMs ${n}`, { budgetMs: v }]),
  ] as [string, unknown][])('calibrate %s', async (label, options) => {
    await expectRefused(label, () => rt.calibrate(options as never), ['INVALID_ARGUMENT'], true)
  })

  const seg: [string, unknown[]][] = []
  for (const [n, v] of JUNK.filter(([, v]) => !(v instanceof Int32Array))) seg.push([`ids ${n}`, [v, 1, 4]])
  for (const [n, v] of BAD_SIZES)
    seg.push([`adaptersPerToken ${n}`, [Int32Array.of(0, 1), v, 4]], [`numSlots ${n}`, [Int32Array.of(0, 1), 1, v]])
  for (const [n, v] of BAD_SIZES.filter(([, v]) => v !== undefined && v !== null))
    seg.push([`chunkSize ${n}`, [Int32Array.of(0, 1), 1, 4, v]])
  seg.push(
    ['id >= numSlots', [Int32Array.of(0, 4), 1, 4]],
    ['id -2', [Int32Array.of(-2), 1, 4]],
    ['K does not divide ids', [Int32Array.of(0, 1, 2), 2, 4]],
  )
  it.each(seg)('buildSegments %s', async (label, args) => {
    await expectRefused(label, () => (buildSegments as (...a: unknown[]) => unknown)(...args))
  })

  it.each(JUNK.filter(([, v]) => !(v instanceof Uint8Array)))('readSafetensors %s', async (label, v) => {
    await expectRefused(label, () => readSafetensors(v as never), ['INVALID_ARGUMENT'])
  })

  const write: [string, unknown[]][] = []
  for (const [n, v] of JUNK.filter(([, v]) => typeof v !== 'object' || v === null)) write.push([`tensors ${n}`, [v]])
  for (const [n, v] of JUNK) write.push([`tensor entry ${n}`, [{ t: v }]])
  for (const [n, v] of JUNK.filter(([, v]) => !Array.isArray(v)))
    write.push([`shape ${n}`, [{ t: { dtype: 'F32', shape: v, data: new Float32Array(1) } }]])
  for (const [n, v] of JUNK.filter(([, v]) => !(v instanceof Float32Array)))
    write.push([`data ${n}`, [{ t: { dtype: 'F32', shape: [1], data: v } }]])
  for (const [n, v] of JUNK) write.push([`dtype ${n}`, [{ t: { dtype: v, shape: [1], data: new Float32Array(1) } }]])
  for (const [n, v] of JUNK.filter(([, v]) => v !== undefined && (typeof v !== 'object' || v === null)))
    write.push([`metadata ${n}`, [{}, v]])
  write.push(
    ['metadata value 1', [{}, { a: 1 }]],
    ['shape [-1, -1] over 1 value', [{ t: { dtype: 'F32', shape: [-1, -1], data: new Float32Array(1) } }]],
  )
  it.each(write)('writeSafetensors %s', async (label, args) => {
    await expectRefused(label, () => (writeSafetensors as (...a: unknown[]) => unknown)(...args), ['INVALID_ARGUMENT'])
  })
})

describe('a disposed runtime: every call is DISPOSED (promise calls reject), nothing else', () => {
  it('runtime and layer methods', async () => {
    const r = await createRuntime({ backend: 'wasm' })
    await r.loadAdapter('a', peft)
    const layer = r.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
    r.dispose()
    r.dispose() // twice is fine
    const D: LoraErrorCode[] = ['DISPOSED']
    await expectRefused('createLayer', () => r.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 }), D)
    await expectRefused('loadAdapter', () => r.loadAdapter('b', peft), D, true)
    await expectRefused('unloadAdapter', () => r.unloadAdapter('a'), D)
    await expectRefused('listAdapters', () => r.listAdapters(), D)
    await expectRefused('apply', () => r.apply(Q, new Float32Array(12), new Float32Array(12), ['a']), D, true)
    await expectRefused('pin', () => r.pin('a'), D, true)
    await expectRefused('unpin', () => r.unpin('a'), D)
    await expectRefused('explain', () => r.explain({ tokens: 1, inFeatures: 4, outFeatures: 4, rank: 1 }), D)
    await expectRefused('calibrate', () => r.calibrate(), D, true)
    await expectRefused(
      'layer.setAdapter',
      () => layer.setAdapter(0, { rank: 1, scale: 1, A: new Float32Array(4), B: new Float32Array(4) }),
      D,
    )
    await expectRefused('layer.clearAdapter', () => layer.clearAdapter(0), D)
    const y = new Float32Array(4).fill(7)
    await expectRefused('layer.apply', () => layer.apply(new Float32Array(4), y, Int32Array.of(-1)), D, true)
    expect(y).toEqual(new Float32Array(4).fill(7))
    expect(layer.hasAdapter(0)).toBe(false)
    expect(r.stats().adapters).toBe(0)
  })

  it('dispose while applies are in flight: each one finishes or rejects with a LoraError', async () => {
    const r = await createRuntime({ backend: 'wasm' })
    await r.loadAdapter('a', peft)
    const tokens = ['a', null, 'a', 'a']
    const xs = Array.from({ length: 20 }, () => rng.array(4 * 12))
    const ys = xs.map(() => new Float32Array(4 * 12))
    const calls = xs.map((x, i) => r.apply(Q, x, ys[i], tokens))
    r.dispose()
    const results = await Promise.allSettled(calls)
    // a finished call has its whole result; a refused one left y untouched
    results.forEach((res, i) => {
      if (res.status === 'rejected') {
        check('in-flight apply', res.reason)
        expect(ys[i]).toEqual(new Float32Array(4 * 12))
      } else expectDelta(ys[i], new Float32Array(4 * 12), expectedDelta(Q, xs[i], tokens), 1e-5, `in-flight apply ${i}`)
    })
  })
})
