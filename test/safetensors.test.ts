import { describe, expect, it } from 'vitest'
import { LoraError, type LoraErrorCode } from '../src/errors.js'
import { encodeHalf } from '../src/dtype.js'
import { readSafetensors, writeSafetensors, MAX_HEADER_BYTES } from '../src/peft/safetensors.js'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Rng } from './random.js'
import { readTensors } from './read-tensors.js'
import { bf16BitsToF32, f16BitsToF32 } from '../src/dtype.js'

/** A file with the given raw header text (padded to 8) and `dataLen` bytes of data. */
function rawFile(header: string, dataLen = 0): Uint8Array {
  const json = new TextEncoder().encode(header)
  const out = new Uint8Array(8 + json.length + dataLen)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  return out
}

function expectError(fn: () => unknown, code: LoraErrorCode, message?: RegExp): void {
  let caught: unknown
  try {
    fn()
  } catch (e) {
    caught = e
  }
  expect(caught, 'expected a LoraError').toBeInstanceOf(LoraError)
  expect((caught as LoraError).code).toBe(code)
  if (message) expect((caught as LoraError).message).toMatch(message)
}

describe('safetensors round trip', () => {
  const rng = new Rng(7)
  it('F32, F16, BF16 tensors and metadata survive write -> read bit-exactly', () => {
    const a = rng.array(3 * 5)
    const h = encodeHalf(rng.array(7), 'f16')
    const b = encodeHalf(rng.array(2 * 2 * 2), 'bf16')
    const file = writeSafetensors(
      {
        a: { dtype: 'F32', shape: [3, 5], data: a },
        h: { dtype: 'F16', shape: [7], data: h },
        b: { dtype: 'BF16', shape: [2, 2, 2], data: b },
      },
      { format: 'pt', note: 'x' },
    )
    const got = readSafetensors(file, 'rt.safetensors')
    expect([...got.metadata]).toEqual([
      ['format', 'pt'],
      ['note', 'x'],
    ])
    expect(got.tensors.get('a')).toEqual({ dtype: 'F32', shape: [3, 5], data: a })
    expect(got.tensors.get('h')!.data).toEqual(h)
    expect(got.tensors.get('h')!.dtype).toBe('F16')
    expect(got.tensors.get('b')!.shape).toEqual([2, 2, 2])
    expect(got.tensors.get('b')!.data).toEqual(b)
  })

  it('aligned tensors are views into the file; unaligned ones are copies with the same values', () => {
    const a = rng.array(4)
    const file = writeSafetensors({ a: { dtype: 'F32', shape: [4], data: a } })
    const view = readSafetensors(file).tensors.get('a')!.data
    expect(view.buffer).toBe(file.buffer)
    // Shift the whole file by one byte: every tensor is now unaligned.
    const shifted = new Uint8Array(file.length + 1).subarray(1)
    shifted.set(file)
    const copy = readSafetensors(shifted).tensors.get('a')!.data
    expect(copy.buffer).not.toBe(shifted.buffer)
    expect(copy).toEqual(a)
  })

  it('empty tensors, scalars and an empty header are valid', () => {
    const file = writeSafetensors({
      e: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      s: { dtype: 'F32', shape: [], data: new Float32Array([2.5]) },
    })
    const got = readSafetensors(file)
    expect(got.tensors.get('e')!.data.length).toBe(0)
    expect(got.tensors.get('s')!.data[0]).toBe(2.5)
    expect(readSafetensors(rawFile('{}')).tensors.size).toBe(0)
  })

  it('the writer refuses data that does not match the shape', () => {
    expectError(
      () => writeSafetensors({ a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }),
      'INVALID_ARGUMENT',
      /"a".*\[2, 2\]/,
    )
    expectError(() => writeSafetensors({ a: { dtype: 'F16', shape: [2], data: new Float32Array(2) } }), 'INVALID_ARGUMENT', /Uint16Array/)
  })
})

describe('safetensors against an independent reading of the format', () => {
  it("the writer's bytes: little-endian header length, space-padded to 8, contiguous offsets, values as the test's own reader decodes them", () => {
    const rng = new Rng(9)
    const a = rng.array(3 * 5)
    const h = encodeHalf(rng.array(7), 'f16')
    const b = encodeHalf(rng.array(4), 'bf16')
    const file = writeSafetensors(
      new Map([
        ['a', { dtype: 'F32' as const, shape: [3, 5], data: a }],
        ['h', { dtype: 'F16' as const, shape: [7], data: h }],
        ['b', { dtype: 'BF16' as const, shape: [2, 2], data: b }],
      ]),
      { format: 'pt' },
    )
    const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true))
    expect(n % 8).toBe(0)
    const text = new TextDecoder().decode(file.subarray(8, 8 + n))
    const json = text.trimEnd()
    expect(text.slice(json.length)).toMatch(/^ *$/)
    expect(n - json.length).toBeLessThan(8)
    expect(JSON.parse(json)).toEqual({
      __metadata__: { format: 'pt' },
      a: { dtype: 'F32', shape: [3, 5], data_offsets: [0, 60] },
      h: { dtype: 'F16', shape: [7], data_offsets: [60, 74] },
      b: { dtype: 'BF16', shape: [2, 2], data_offsets: [74, 82] },
    })
    expect(file.length).toBe(8 + n + 82)
    const got = readTensors(file)
    expect(got.get('a')!.data).toEqual(a)
    expect(got.get('h')!.data).toEqual(Float32Array.from(h, f16BitsToF32))
    expect(got.get('b')!.data).toEqual(Float32Array.from(b, bf16BitsToF32))
  })

  it("files written by Python's safetensors (the PEFT fixtures) read as the test's own reader reads them", () => {
    const root = fileURLToPath(new URL('./fixtures/peft/tiny-llama-config/adapters/', import.meta.url))
    let tensors = 0
    const dtypes = new Set<string>()
    for (const name of readdirSync(root)) {
      const bytes = new Uint8Array(readFileSync(`${root}${name}/adapter_model.safetensors`))
      const lib = readSafetensors(bytes, name).tensors
      const own = readTensors(bytes)
      expect([...lib.keys()].sort(), name).toEqual([...own.keys()].sort())
      for (const [key, t] of own) {
        const l = lib.get(key)!
        expect([l.dtype, l.shape], key).toEqual([t.dtype, t.shape])
        const decode = l.dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32
        expect(l.data instanceof Float32Array ? l.data : Float32Array.from(l.data, decode), key).toEqual(t.data)
        dtypes.add(t.dtype)
        tensors++
      }
    }
    expect(dtypes).toEqual(new Set(['F32', 'F16', 'BF16']))
    expect(tensors).toBeGreaterThan(10)
  })
})

describe('safetensors malformed files -> LoraError INVALID_FILE naming the file', () => {
  const good = writeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } })
  const t = (dtype: string, shape: unknown, offsets: unknown): string => JSON.stringify({ t: { dtype, shape, data_offsets: offsets } })
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty file', new Uint8Array(0), /too short/],
    ['truncated length', good.subarray(0, 5), /too short/],
    ['truncated data', good.subarray(0, good.length - 1), /data_offsets|does not match|outside/],
    ['truncated header', good.subarray(0, 20), /past the end/],
    [
      'header length > 100 MB',
      (() => {
        const f = new Uint8Array(16)
        new DataView(f.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true)
        return f
      })(),
      /limit/,
    ],
    [
      'header length 2^64-1',
      (() => {
        const f = new Uint8Array(16)
        f.fill(0xff, 0, 8)
        return f
      })(),
      /limit/,
    ],
    ['bad JSON', rawFile('{"a": '), /not valid JSON/],
    ['invalid UTF-8', rawFile('{"\xff"}').map((b, i) => (i === 10 ? 0xff : b)), /UTF-8/],
    ['array header', rawFile('[1, 2]'), /must be a JSON object/],
    ['string header', rawFile('"abc"'), /must be a JSON object/],
    ['null header', rawFile('null'), /must be a JSON object/],
    ['tensor entry not an object', rawFile('{"t": 5}'), /entry must be an object/],
    ['dtype not a string', rawFile(t(4 as unknown as string, [1], [0, 4]).replace('"4"', '4'), 4), /dtype/],
    ['unknown dtype', rawFile(t('F99', [1], [0, 4]), 4), /unknown dtype/],
    ['shape not an array', rawFile(t('F32', 3, [0, 12]), 12), /shape/],
    ['negative dimension', rawFile(t('F32', [-1], [0, 4]), 4), /shape/],
    ['fractional dimension', rawFile(t('F32', [1.5], [0, 6]), 6), /shape/],
    ['huge dimensions', rawFile(t('F32', [2 ** 40, 2 ** 40], [0, 4]), 4), /does not match/],
    ['offsets not two integers', rawFile(t('F32', [1], [0]), 4), /data_offsets/],
    ['offsets reversed', rawFile(t('F32', [1], [4, 0]), 4), /outside/],
    ['offsets outside the data', rawFile(t('F32', [1], [4, 8]), 4), /outside/],
    ['size mismatch', rawFile(t('F32', [2], [0, 4]), 8), /does not match/],
    [
      'overlap',
      rawFile(
        JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }),
        12,
      ),
      /overlap/,
    ],
    [
      '__proto__ tensor name',
      rawFile('{"__proto__": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 4),
      /forbidden key "__proto__"/,
    ],
    ['constructor key', rawFile('{"__metadata__": {"constructor": "x"}}'), /forbidden key "constructor"/],
    ['nested __proto__', rawFile('{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "__proto__": {"x": 1}}}', 4), /forbidden/],
    ['__metadata__ not an object', rawFile('{"__metadata__": "x"}'), /__metadata__/],
    ['__metadata__ with a number', rawFile('{"__metadata__": {"a": 1}}'), /__metadata__\["a"\]/],
    ['__metadata__ array', rawFile('{"__metadata__": ["a"]}'), /__metadata__/],
  ]
  for (const [name, bytes, message] of cases) {
    it(name, () => {
      expectError(() => readSafetensors(bytes, 'bad.safetensors'), 'INVALID_FILE', message)
      expectError(() => readSafetensors(bytes, 'bad.safetensors'), 'INVALID_FILE', /^INVALID_FILE: bad\.safetensors: /)
    })
  }

  it('a valid dtype other than F32/F16/BF16 is UNSUPPORTED_DTYPE naming tensor and dtype', () => {
    expectError(() => readSafetensors(rawFile(t('I64', [1], [0, 8]), 8), 'x.safetensors'), 'UNSUPPORTED_DTYPE', /"t" has dtype I64/)
  })

  it('touching but not overlapping tensors are fine', () => {
    const f = rawFile(
      JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F16', shape: [2], data_offsets: [4, 8] } }),
      8,
    )
    expect([...readSafetensors(f).tensors.keys()]).toEqual(['a', 'b'])
  })

  it('nothing from the header reaches Object.prototype', () => {
    expect(({} as Record<string, unknown>).x).toBeUndefined()
    expect(Object.hasOwn(Object.prototype, 'dtype')).toBe(false)
  })

  it('random corruption of a valid file never throws anything but LoraError', () => {
    const rng = new Rng(99)
    const base = writeSafetensors(
      { a: { dtype: 'F32', shape: [3, 2], data: rng.array(6) }, b: { dtype: 'BF16', shape: [5], data: new Uint16Array(5) } },
      { k: 'v' },
    )
    for (let i = 0; i < 2000; i++) {
      const f = base.slice(0, rng.int(base.length + 1))
      for (let j = rng.int(4); j >= 0; j--) f[rng.int(Math.min(f.length, 120)) || 0] = rng.int(256)
      try {
        readSafetensors(f)
      } catch (e) {
        expect(e).toBeInstanceOf(LoraError)
        expect(['INVALID_FILE', 'UNSUPPORTED_DTYPE']).toContain((e as LoraError).code)
      }
    }
  })
})
