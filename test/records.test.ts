/**
 * The records the host writes for the kernels are defined once (src/wasm/records.ts) and mirrored
 * in AssemblyScript (assembly/records.ts): every value of the mirror equals the definition, and no
 * other module of assembly/ spells one out again.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'
import { DTYPE_CODE, SEGMENT_BYTES, SLOT_BYTES, TASK_FIELDS, writeSegments } from '../src/wasm/records.js'

const ASSEMBLY = new URL('../assembly/', import.meta.url)

/** `export const NAME: i32 = value` of an AssemblyScript module. */
function constantsOf(text: string): Record<string, number> {
  return Object.fromEntries([...text.matchAll(/^export const (\w+): i32 = (-?\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
}

describe('shared records', () => {
  it('assembly/records.ts mirrors src/wasm/records.ts value for value', () => {
    const mirror = constantsOf(readFileSync(new URL('records.ts', ASSEMBLY), 'utf8'))
    expect(mirror).toEqual({
      DTYPE_F32: DTYPE_CODE.f32,
      DTYPE_BF16: DTYPE_CODE.bf16,
      DTYPE_F16: DTYPE_CODE.f16,
      SEGMENT_BYTES,
      SLOT_BYTES,
      TASK_FIELDS,
    })
  })

  it('no other AssemblyScript module defines a record size of its own', () => {
    for (const file of readdirSync(ASSEMBLY).filter((f) => f.endsWith('.ts') && f !== 'records.ts')) {
      const text = readFileSync(new URL(file, ASSEMBLY), 'utf8')
      expect(
        Object.keys(constantsOf(text)).filter((k) => /BYTES|FIELDS|DTYPE/.test(k)),
        file,
      ).toEqual([])
      expect(text, file).not.toMatch(/segPtr \+ <usize>g \* \d/)
      // arguments are arguments: none read from the words before a pointer, none packed into dtype
      expect(text, file).not.toMatch(/load<\w+>\(\w+Ptr - \d/)
      expect(text, file).not.toMatch(/dtype &=|dtype >= /)
    }
  })

  it('writeSegments writes (slot, first entry, entries) per segment, SEGMENT_BYTES apart', () => {
    const plan = buildSegments(Int32Array.of(2, 0, 2, -1, 0), 1, 3, 64)
    const i32 = new Int32Array(16).fill(-7)
    writeSegments(i32, 8, plan)
    expect([...i32.subarray(2, 2 + 2 * (SEGMENT_BYTES >> 2))]).toEqual([0, 0, 2, 2, 2, 2])
    expect(i32[1]).toBe(-7)
    expect(i32[8]).toBe(-7)
  })
})
