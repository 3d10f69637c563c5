/**
 * The WGSL loop unrolling of src/webgpu/unroll.ts (the default under wgpu: Deno, Firefox): the
 * rewriting itself on small sources, then the shared kernel grid (test/grid.ts) with unrolled
 * kernels of both tile families on the adapter here (lavapipe in CI) against the float64
 * reference, and the same bits as the kernels as written. Without a WebGPU adapter the GPU half
 * is skipped (test/needs.ts; a failure under CI=true).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'
import { SHADER_NAMES } from '../src/webgpu/shaders.js'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import { overrideValues, unrollLoops } from '../src/webgpu/unroll.js'
import { expectDelta, expectUntouchedRows, TOLERANCE } from './compare.js'
import { caseGrid, materialise } from './grid.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'
import { readFileSync } from 'node:fs'

const squash = (s: string): string => s.replace(/\s+/g, ' ').trim()

describe('unrollLoops', () => {
  it('unrolls a loop over a literal or an override into blocks with the index as a constant', () => {
    expect(squash(unrollLoops('for (var i = 0u; i < 3u; i++) { a[i] += 1.0; }', {}))).toBe(
      '{ let i = 0u; a[i] += 1.0; } { let i = 1u; a[i] += 1.0; } { let i = 2u; a[i] += 1.0; }',
    )
    expect(squash(unrollLoops('for (var g = 1u; g < KG; g++) { v += h[g]; }', { KG: 3 }))).toBe(
      '{ let g = 1u; v += h[g]; } { let g = 2u; v += h[g]; }',
    )
    expect(squash(unrollLoops('x; for (var g = 1u; g < KG; g++) { v += h[g]; } y;', { KG: 1 }))).toBe('x; y;')
  })

  it('unrolls nested loops, inner ones inside every copy', () => {
    const src = 'for (var i = 0u; i < MT; i++) { for (var j = 0u; j < RV; j++) { acc[i * RV + j] += 1.0; } }'
    const out = unrollLoops(src, { MT: 2, RV: 2 })
    expect(out).not.toContain('for')
    expect(out.match(/acc\[i \* RV \+ j\]/g)).toHaveLength(4)
    expect(squash(out)).toBe(
      '{ let i = 0u; { let j = 0u; acc[i * RV + j] += 1.0; } { let j = 1u; acc[i * RV + j] += 1.0; } } ' +
        '{ let i = 1u; { let j = 0u; acc[i * RV + j] += 1.0; } { let j = 1u; acc[i * RV + j] += 1.0; } }',
    )
  })

  it('leaves loops that cannot be unrolled as they are, and unrolls the loops inside them', () => {
    const brk = 'for (var i = 0u; i < MT; i++) { if (i > n) { break; } y[i] = 0.0; }'
    expect(unrollLoops(brk, { MT: 4 })).toBe(brk)
    const unknown = 'for (var i = 0u; i < count; i++) { y[i] = 0.0; }'
    expect(unrollLoops(unknown, {})).toBe(unknown)
    const long = 'for (var i = 0u; i < 65u; i++) { y[i] = 0.0; }'
    expect(unrollLoops(long, {})).toBe(long)
    const strided = 'for (var k = kb; k < ke; k += 2u) { for (var j = 0u; j < 2u; j++) { s += a[k + j]; } }'
    expect(squash(unrollLoops(strided, {}))).toBe(
      'for (var k = kb; k < ke; k += 2u) { { let j = 0u; s += a[k + j]; } { let j = 1u; s += a[k + j]; } }',
    )
  })

  it('reads the defaults of override declarations, values given over them', () => {
    expect(overrideValues('override MT: u32 = 4u;\noverride KG: u32 = 1u;\n', { KG: 8 })).toEqual({ MT: 4, KG: 8 })
  })

  it('keeps every shader balanced: as many braces, no loop over an override left where it could go', () => {
    for (const name of SHADER_NAMES) {
      const src = readFileSync(new URL(`../shaders/${name}.wgsl`, import.meta.url), 'utf8')
      const known = overrideValues(src, {}) // overrides with a literal default (not those computed from others)
      const out = unrollLoops(src, known)
      expect(out.split('{').length, name).toBe(out.split('}').length)
      for (const m of out.matchAll(/for \(var (\w+) = \d+u?; \1 < ([A-Z]+); \1\+\+\) /g)) {
        if (!(m[2] in known)) continue
        const start = (m.index ?? 0) + m[0].length
        const rest = out.slice(start, start + 400)
        expect(/\b(break|continue|return)\b/.test(rest), `${name}: loop over ${m[2]} left`).toBe(true)
      }
    }
  })
})

const gpuHere = await has('webgpu')
const backends: Record<string, { plain: WebGpuBackend; unrolled: WebGpuBackend }> = {}
beforeAll(async () => {
  if (!gpuHere) return
  for (const kernels of ['software', 'discrete'] as const) {
    const plain = await createWebGpuBackend({ kernels, unroll: false })
    backends[kernels] = { plain, unrolled: await createWebGpuBackend({ device: plain.device, kernels, unroll: true }) }
  }
})
afterAll(() => {
  for (const b of Object.values(backends)) {
    b.unrolled.dispose()
    b.plain.dispose()
  }
})

/**
 * Cases of the shared grid that reach every kernel family: decode and prefill tiles, 16-bit
 * weights, several adapters per token, per-token weights, uneven slices (unrolled pipelines are
 * compiled per tiling: the whole grid would take lavapipe many minutes).
 */
const PICKED = [
  'dtype=bf16',
  'slots=32',
  'QKV 4096/1024/1024 r16',
  'slices=2',
  'three adapters per token with padding',
  'weights, one long segment, bf16',
  'one segment longer than a chunk',
]
const CASES = caseGrid(1).filter((c) => PICKED.some((p) => c.name.startsWith(p)))

describe.runIf(gpuHere).each(['software', 'discrete'] as const)('unrolled kernels, %s tiles', (kernels) => {
  it('picks every case it names', () => {
    expect(CASES).toHaveLength(PICKED.length)
  })
  it.each(CASES.map((c) => [c.name, c] as const))(
    '%s: matches the float64 reference with the bits of the kernels as written',
    async (_name, c) => {
      const d = materialise(c)
      const plan = buildSegments(d.ids, c.adaptersPerToken, c.slots, 64, d.weights)
      const out: Float32Array[] = []
      for (const backend of [backends[kernels].unrolled, backends[kernels].plain]) {
        const layer = backend.createLayer(d.spec)
        try {
          d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
          const y = new Float32Array(d.y)
          await layer.apply(d.x, y, plan)
          out.push(y)
        } finally {
          layer.dispose()
        }
      }
      expectDelta(out[0], d.y, sgmv(d.ref, d.x, d.ids, c.adaptersPerToken, d.weights), TOLERANCE[c.dtype], c.name)
      expectUntouchedRows(out[0], d.y, d.ids, c.adaptersPerToken, d.spec.outFeatures)
      expect(new Uint32Array(out[0].buffer), `${c.name}: same bits as the kernels as written`).toEqual(new Uint32Array(out[1].buffer))
    },
    600_000,
  )
})
