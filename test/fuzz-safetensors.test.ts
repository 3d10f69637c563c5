/**
 * Property tests (fast-check) of the safetensors reader: every input, however malformed, ends in
 * a parsed file whose tensors lie inside it, or in a LoraError (INVALID_FILE / UNSUPPORTED_DTYPE),
 * quickly, and never allocates more than the file's own size. fast-check prints the failing input
 * and the seed to replay it (FUZZ_SEED=<seed>).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LoraError } from '../src/errors.js'
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../src/peft/safetensors.js'
import { FUZZ_SEED } from './random.js'

const runs = (n: number): fc.Parameters<unknown> => ({ numRuns: n, seed: FUZZ_SEED, endOnFailure: true })
/** Parse, and check the outcome: a sane file or a LoraError of an allowed code. */
function parseChecked(bytes: Uint8Array): 'ok' | string {
  let outcome: 'ok' | string
  try {
    const file = readSafetensors(bytes, 'fuzz.safetensors')
    let total = 0
    for (const [name, t] of file.tensors) {
      expect(['F32', 'F16', 'BF16'], name).toContain(t.dtype)
      const count = t.shape.reduce((a, b) => a * b, 1)
      expect(t.data.length, `tensor ${name} length vs shape [${t.shape}]`).toBe(count)
      total += t.data.byteLength
    }
    // no tensor data beyond what the file holds (tensors do not overlap)
    expect(total).toBeLessThanOrEqual(bytes.length)
    for (const v of file.metadata.values()) expect(typeof v).toBe('string')
    outcome = 'ok'
  } catch (e) {
    if (!(e instanceof LoraError)) throw new Error(`not a LoraError: ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e })
    expect(['INVALID_FILE', 'UNSUPPORTED_DTYPE'], e.message).toContain(e.code)
    expect(e.message).toContain('fuzz.safetensors')
    outcome = e.code
  }
  return outcome
}

/** A file from a header string, a declared header length (may lie) and `dataLen` data bytes. */
function fileOf(header: string, declared: bigint | null, dataLen: number, fill = 0): Uint8Array {
  const json = new TextEncoder().encode(header)
  const out = new Uint8Array(8 + json.length + dataLen).fill(fill)
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(json.length), true)
  out.set(json, 8)
  return out
}

const KEYS = [
  'a',
  'b',
  'model.w',
  '__proto__',
  'constructor',
  'prototype',
  '__metadata__',
  'toString',
  'hasOwnProperty',
  '',
  'é',
  'x'.repeat(300),
]
const dtypeArb = fc.oneof(
  fc.constantFrom('F32', 'F16', 'BF16'),
  fc.constantFrom('I64', 'U8', 'F64', 'BOOL', 'F8_E4M3', 'f32', 'F 32', ''),
  fc.constantFrom(4, null, true, ['F32'], { F32: 1 }),
)
const dimArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, -0, 1.5, NaN, Infinity, 2 ** 31, 2 ** 40, 2 ** 53, 2 ** 53 + 2, 1e308, '2', null) },
)
const shapeArb = fc.oneof(
  { weight: 8, arbitrary: fc.array(dimArb, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom(3, 'x', null, {}, new Array(9).fill(1), new Array(100).fill(0)) },
)
const offsetArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 1, arbitrary: fc.constantFrom(-4, 0.5, 2 ** 32, 2 ** 53, 1e300, -1e300, '4', null, NaN) },
)
const offsetsArb = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(offsetArb, offsetArb) },
  { weight: 1, arbitrary: fc.constantFrom([], [0], [0, 4, 8], 'x', null, { 0: 0, 1: 4 }) },
)
const entryArb = fc.oneof(
  { weight: 10, arbitrary: fc.record({ dtype: dtypeArb, shape: shapeArb, data_offsets: offsetsArb }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.constantFrom(null, 5, 'x', [], [1, 2], { __proto__: null }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'constructor'), fc.string({ maxLength: 4 }), { maxKeys: 3 }) },
)
/** A header object as JSON text, with keys that could hit a prototype if anyone copied it. */
const headerArb = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 6 })), entryArb), { maxLength: 5 })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`)
const declaredArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant(null) }, // the true length
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(0n, 1n, 2n, 7n, 100_000_000n, 100_000_001n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 32n, 2n ** 32n + 2n),
  },
)

describe('fuzz: readSafetensors', () => {
  it('random bytes (any length 0..256): LoraError or a sane file', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (b) => void parseChecked(b)),
      runs(3000),
    )
  })

  it('random header objects (wrong dtype/shape/offsets, __proto__/constructor keys, lying lengths)', () => {
    const outcomes = new Map<string, number>()
    fc.assert(
      fc.property(
        headerArb,
        declaredArb,
        fc.integer({ min: 0, max: 80 }),
        fc.integer({ min: 0, max: 255 }),
        (h, declared, dataLen, fill) => {
          const o = parseChecked(fileOf(h, declared, dataLen, fill))
          outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
        },
      ),
      runs(3000),
    )
    // the generator reaches both sides of the parser, not only its first check
    expect(outcomes.get('ok') ?? 0, JSON.stringify([...outcomes])).toBeGreaterThan(30)
    expect(outcomes.get('INVALID_FILE') ?? 0).toBeGreaterThan(300)
  })

  it('prototype keys anywhere in the header are refused and pollute nothing', () => {
    const key = fc.constantFrom('__proto__', 'constructor', 'prototype')
    fc.assert(
      fc.property(key, fc.constantFrom('top', 'entry', 'metadata'), (k, where) => {
        const entry = { dtype: 'F32', shape: [1], data_offsets: [0, 4] }
        const header =
          where === 'top'
            ? `{${JSON.stringify(k)}:${JSON.stringify(entry)}}`
            : where === 'entry'
              ? `{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],${JSON.stringify(k)}:{"polluted":1}}}`
              : `{"__metadata__":{${JSON.stringify(k)}:"x"}}`
        expect(parseChecked(fileOf(header, null, 4))).toBe('INVALID_FILE')
        expect(({} as Record<string, unknown>).polluted).toBeUndefined()
        expect(Object.hasOwn(Object.prototype, 'dtype')).toBe(false)
      }),
      runs(200),
    )
  })

  it('bit flips, truncations and splices of valid files: LoraError or a sane file', () => {
    const tensorArb = fc.record({
      dtype: fc.constantFrom('F32', 'F16', 'BF16') as fc.Arbitrary<'F32' | 'F16' | 'BF16'>,
      shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    })
    const fileArb = fc
      .dictionary(
        fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !['__proto__', 'constructor', 'prototype', '__metadata__'].includes(k)),
        tensorArb,
        { maxKeys: 4 },
      )
      .map((spec) => {
        const tensors = new Map<string, TensorToWrite>()
        for (const [k, { dtype, shape }] of Object.entries(spec)) {
          const n = shape.reduce((a, b) => a * b, 1)
          tensors.set(k, { dtype, shape, data: dtype === 'F32' ? new Float32Array(n).fill(1.5) : new Uint16Array(n).fill(0x3c00) })
        }
        return writeSafetensors(tensors, { format: 'pt' })
      })
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('extend' as const), n: fc.integer({ min: 1, max: 16 }) }),
      fc.record({ kind: fc.constant('length' as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    )
    let valid = 0
    fc.assert(
      fc.property(fileArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (file, ms) => {
        // the unmutated file reads back
        expect(parseChecked(file)).toBe('ok')
        let f = file.slice()
        for (const m of ms) {
          if (m.kind === 'flip' && f.length) f[m.at % f.length] ^= 1 << m.bit
          if (m.kind === 'set' && f.length) f[m.at % f.length] = m.value
          if (m.kind === 'truncate') f = f.slice(0, m.at % (f.length + 1))
          if (m.kind === 'extend') f = Uint8Array.from([...f, ...new Uint8Array(m.n)])
          if (m.kind === 'length' && f.length >= 8) new DataView(f.buffer).setBigUint64(0, m.value, true)
        }
        if (parseChecked(f) === 'ok') valid++
      }),
      runs(2000),
    )
    expect(valid).toBeGreaterThan(0)
  })

  it('writer -> reader round trip is exact for any tensors', () => {
    const tensorArb = fc.record({ shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), half: fc.boolean(), seed: fc.nat() })
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.tuple(
            fc.string({ minLength: 1, maxLength: 6 }).filter((k) => !['__proto__', 'constructor', 'prototype', '__metadata__'].includes(k)),
            tensorArb,
          ),
          { selector: ([k]) => k, maxLength: 4 },
        ),
        (list) => {
          const tensors = new Map<string, TensorToWrite>()
          for (const [k, { shape, half, seed }] of list) {
            const n = shape.reduce((a, b) => a * b, 1)
            const data = half
              ? Uint16Array.from({ length: n }, (_, i) => (seed + i * 7919) & 0xffff)
              : Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed + i)))
            tensors.set(k, { dtype: half ? 'BF16' : 'F32', shape, data })
          }
          const back = readSafetensors(writeSafetensors(tensors)).tensors
          // order may differ: JSON objects list integer-like keys first
          expect([...back.keys()].sort()).toEqual([...tensors.keys()].sort())
          for (const [k, t] of tensors) {
            expect(back.get(k)!.shape).toEqual(t.shape)
            expect(back.get(k)!.data).toEqual(t.data)
          }
        },
      ),
      runs(500),
    )
  })

  it('a header claiming far more than the file holds is refused without allocating it', () => {
    const before = process.memoryUsage().arrayBuffers
    for (const declared of [100_000_000n, 2n ** 53n, 2n ** 64n - 1n]) {
      expect(parseChecked(fileOf('{}', declared, 0))).toBe('INVALID_FILE')
    }
    // a shape whose product is astronomically large, over a 4-byte data section
    expect(
      parseChecked(fileOf(JSON.stringify({ t: { dtype: 'F32', shape: [2 ** 26, 2 ** 26, 2 ** 26], data_offsets: [0, 4] } }), null, 4)),
    ).toBe('INVALID_FILE')
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20)
  })
})
