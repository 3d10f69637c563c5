import { describe, expect, it } from 'vitest'
import { WasmMemory } from '../src/wasm/memory.js'

describe('WasmMemory', () => {
  it('allocates aligned, disjoint blocks, grows, and coalesces freed blocks', () => {
    const memory = new WebAssembly.Memory({ initial: 1 })
    const mem = new WasmMemory(memory, 100)
    const a = mem.alloc(10)
    const b = mem.alloc(100_000) // forces growth: old views detach
    const c = mem.alloc(33)
    for (const p of [a, b, c]) expect(p % 16).toBe(0)
    expect(a).toBeGreaterThanOrEqual(100)
    expect(b).toBeGreaterThanOrEqual(a + 16)
    expect(c >= b + 100_000 || c + 48 <= b).toBe(true)
    mem.f32[b >> 2] = 1.5 // a view taken after growth sees the grown memory
    expect(new Float32Array(memory.buffer)[b >> 2]).toBe(1.5)
    mem.release(a)
    mem.release(c)
    mem.release(b)
    expect(mem.allocatedBytes).toBe(0)
    // everything coalesced back: a block as large as all of it fits at the start again
    expect(mem.alloc(100_000 + 64)).toBe(a)
    expect(() => mem.release(12345)).toThrow(/double free/)
  })
})
