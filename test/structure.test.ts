/**
 * The shape of the source tree: no file of src/ over MAX_LINES lines, and no import cycle among
 * the modules of src/ (static, type-only and dynamic imports all count: a cycle of any kind means
 * two modules that cannot be read one without the other).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const MAX_LINES = 300
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SRC = join(ROOT, 'src')

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

/** Relative specifiers of `from '...'` and `import('...')` in a module, resolved to .ts paths under src/. */
function importsOf(file: string, text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    out.push(relative(SRC, normalize(join(dirname(file), m[1].replace(/\.js$/, '.ts')))))
  }
  return out
}

/** Every cycle's modules, in import order (one per strongly connected set it passes through). */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (n: string): void => {
    state.set(n, 'open')
    stack.push(n)
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') found.push([...stack.slice(stack.indexOf(m)), m])
      else if (!state.has(m)) visit(m)
    }
    stack.pop()
    state.set(n, 'done')
  }
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n)
  return found
}

const files = sources(SRC)
const graph = new Map(files.map((f) => [relative(SRC, f), importsOf(f, readFileSync(f, 'utf8'))]))

describe('source tree', () => {
  it(`has no file of src/ over ${MAX_LINES} lines`, () => {
    const long = files
      .map((f) => [relative(ROOT, f), readFileSync(f, 'utf8').split('\n').length - 1] as const)
      .filter(([, n]) => n > MAX_LINES)
    expect(long).toEqual([])
  })

  it('has no import cycle in src/', () => {
    expect(graph.size).toBeGreaterThan(40)
    expect(cycles(graph).map((c) => c.join(' -> '))).toEqual([])
  })

  it('the cycle finder finds a cycle and every import form', () => {
    const text = `import a from './a.js'\nimport type { B } from "../b.js"\nexport { c } from './c/c.js'\nconst d = await import('./d.js')\n`
    expect(importsOf(join(SRC, 'x', 'y.ts'), text)).toEqual(['x/a.ts', 'b.ts', 'x/c/c.ts', 'x/d.ts'])
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
          ['d', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c', 'a']])
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', []],
        ]),
      ),
    ).toEqual([])
  })
})
