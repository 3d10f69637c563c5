/**
 * WGSL loops unrolled in the source, for WebGPU implementations whose shader compiler keeps the
 * driver from unrolling them.
 *
 * The kernels keep their register tiles in small arrays (`acc[i * RV + j]`) indexed by loops over
 * override constants (MT, RV, NQ, KG). Dawn's SPIR-V leaves those loops plain, the driver unrolls
 * them and the arrays become registers. wgpu (Deno, Firefox) adds a 64-bit iteration counter to
 * every loop (naga's loop bounding, gfx-rs/wgpu#7080 and #7698) and writes each as `loop {}`: the
 * driver no longer unrolls them, and the arrays live in memory. On lavapipe the same shrink and
 * expand ran 4-7x slower under Deno than under Dawn; on an H200 7-20x.
 *
 * `unrollLoops` rewrites `for (var i = A; i < N; i++) { body }`, with A a literal and N a literal
 * or an override of known value, into N - A copies of `{ let i = ku; body }`: the same operations
 * in the same order (same bits). Loops whose body has break, continue or return, or that would
 * make more than MAX_COPIES copies, stay as they are. Inner loops of a copy are unrolled in turn.
 */

/** Largest number of copies of one loop body. */
const MAX_COPIES = 64

const LOOP = /for \(var (\w+) = (\d+)u?; \1 < (\w+); \1\+\+\) \{/g

/** The values of `override NAME: u32 = Vu;` declarations, then `values` over them. */
export function overrideValues(source: string, values: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of source.matchAll(/^override (\w+): u32 = (\d+)u;/gm)) out[m[1]] = Number(m[2])
  return { ...out, ...values }
}

/** Index of the `}` that closes the `{` at `open`, or -1. */
function closing(src: string, open: number): number {
  let depth = 0
  for (let i = open; i < src.length; i++) {
    if (src[i] === '{') depth++
    else if (src[i] === '}' && --depth === 0) return i
  }
  return -1
}

export function unrollLoops(source: string, values: Record<string, number>): string {
  let src = source
  let from = 0
  for (;;) {
    LOOP.lastIndex = from
    const m = LOOP.exec(src)
    if (!m) return src
    const open = m.index + m[0].length - 1
    const close = closing(src, open)
    const start = Number(m[2])
    const literal = /^(\d+)u?$/.exec(m[3])
    const end = literal ? Number(literal[1]) : values[m[3]]
    const body = close < 0 ? '' : src.slice(open + 1, close)
    if (close < 0 || end === undefined || end - start > MAX_COPIES || /\b(break|continue|return)\b/.test(body)) {
      from = open + 1
      continue
    }
    const copies: string[] = []
    for (let k = start; k < end; k++) copies.push(`{ let ${m[1]} = ${k}u;${body}}`)
    src = `${src.slice(0, m.index)}${copies.join(' ')}${src.slice(close + 1)}`
    from = m.index // the copies' own loops next
  }
}
