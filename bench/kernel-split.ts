/**
 * How much of a one-thread wasm call is arithmetic and how much is memory, for the shapes of the
 * side-by-side table (bench/cli/table.ts): T tokens round-robin over `batch` adapters, one slice,
 * f32 and bf16 weights. The raw shrink and expand exports run segment by segment as the driver
 * (assembly/sgmv.ts) runs them, without its scale, timed as:
 *   - cold: 64 MiB read (untimed) before every call and each call on adapters not used for
 *     >= 128 MiB of others, so weights, x and y come from memory: shrink alone, expand alone, and
 *     both (shrink then expand per segment, as the driver does);
 *   - warm: each segment's kernel run twice back to back and the second run timed, so its weights
 *     and its rows of x and y come from cache (a whole call's weights, up to 32 MiB here, would
 *     not stay there): shrink alone, expand alone. Their sum is the call's arithmetic floor.
 * Against the ceilings of this machine measured in the same run (bench/ceilings.ts, before and
 * after the shapes; the best of the two is used): the warm GFLOP/s as a fraction of the f32x4
 * peak, and the memory time of the call (weights of the dtype, x read, y read and written, at the
 * one-core read bandwidth). Median of CALLS calls per cell; the cells of a shape are interleaved
 * call by call. Only the sizes of the weights matter here, not their values: every weight byte is
 * 0x3c (f32 0x3c3c3c3c and bf16 0x3c3c are both about 0.0115), every x value 0.01.
 * Writes the JSON and a markdown table beside it (same name, .md).
 * Usage: npx tsx bench/kernel-split.ts [--json FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { basename, dirname } from 'node:path'
import { DTYPE_BYTES } from '../src/dtype.js'
import type { WeightDtype } from '../src/types.js'
import { createWasmBackend } from '../src/wasm/backend.js'
import { DTYPE_CODE } from '../src/wasm/records.js'
import { type Ceilings, measureCeilings } from './ceilings.js'
import { COLD_BYTES, DTYPES } from './cli/grid.js'
import { TABLE_SHAPES, tableAdapterBytes as adapterBytes, tableShapeLabel, type TableShape } from './table-md.js'
import { quantile } from './timing-threads.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const jsonPath = flag('--json') ?? 'bench/results/kernel-split.json'
const mdPath = `${jsonPath.replace(/\.json$/, '')}.md`
const CALLS = 41
const FLUSH_BYTES = 64 << 20
/** Untimed calls of each shape and dtype before its cells, for V8 to compile the kernels' paths in its optimizing tier. */
const WARMUP_MS = 100

type Cell = 'shrinkCold' | 'shrinkWarm' | 'expandCold' | 'expandWarm' | 'bothCold'
const CELLS: Cell[] = ['shrinkCold', 'shrinkWarm', 'expandCold', 'expandWarm', 'bothCold']

interface Row {
  shape: TableShape
  dtype: WeightDtype
  /** Entries of each segment (T / batch). */
  perSegment: number
  /** The driver decodes bf16 weights to f32 and runs the f32 kernels on segments this long; timed here: the bf16 kernels. */
  driverDecodes: boolean
  /** Median ms per call. */
  ms: Record<Cell, number>
  mulAdds: { shrink: number; expand: number }
  /** shrinkWarm + expandWarm. */
  floorMs: number
  /** 2 flops per multiply-add over floorMs. */
  warmGflops: number
  fractionOfPeak: number
  /** Adapter weights one call reads: batch * rank * (inF + out) of the dtype. */
  weightBytes: number
  /** x read, y read and written: T * (inF + 2 * out) f32. */
  ioBytes: number
  /** (weightBytes + ioBytes) at the read bandwidth. */
  memoryMs: number
  /** bothCold - floorMs: the memory time not hidden behind arithmetic. */
  unhiddenMs: number
}

const wasm = await createWasmBackend()
const ex = wasm.exports
const mem = wasm.memory
const decodeMin = ex.DECODE_MIN.value as number
const t0 = performance.now()
const start = measureCeilings(wasm)
const log = (s: string): void => void process.stderr.write(`${s}\n`)
log(`ceilings: read ${start.readGBs.toFixed(1)} GB/s, f32x4 peak ${start.peakGflops.toFixed(1)} GFLOP/s (one core)`)

const max = (f: (s: TableShape) => number): number => Math.max(...TABLE_SHAPES.map(f))
// every weight byte is the same, whatever the layout and dtype: one pool, filled once, serves all
// shapes; adapter k of a shape lies at pool + k * adapterBytes (A, then B)
const poolBytes = COLD_BYTES + max((s) => adapterBytes(s, 'f32'))
const pool = mem.alloc(poolBytes)
mem.u8.fill(0x3c, pool, pool + poolBytes)
const flushPtr = mem.alloc(FLUSH_BYTES)
mem.u8.fill(1, flushPtr, flushPtr + FLUSH_BYTES)
const x = mem.alloc(max((s) => s.T * s.inF) * 4)
const y = mem.alloc(max((s) => s.T * s.out) * 4)
const h = mem.alloc(max((s) => s.T * s.rank) * 4)
const rows = mem.alloc(max((s) => s.T) * 4)
mem.f32.fill(0.01, x >> 2, (x >> 2) + max((s) => s.T * s.inF))
mem.f32.fill(0, y >> 2, (y >> 2) + max((s) => s.T * s.out))

const measured: Pick<Row, 'shape' | 'dtype' | 'ms'>[] = []
for (const s of TABLE_SHAPES) {
  const label = tableShapeLabel(s)
  const per = s.T / s.batch
  // round-robin: token t belongs to segment t % batch; segment g's entries are rows[g * per ...]
  const i32 = mem.i32
  for (let g = 0; g < s.batch; g++) for (let e = 0; e < per; e++) i32[(rows >> 2) + g * per + e] = g + e * s.batch
  for (const dtype of DTYPES) {
    const code = DTYPE_CODE[dtype]
    const aBytes = s.rank * s.inF * DTYPE_BYTES[dtype]
    const adapters = Math.floor(poolBytes / adapterBytes(s, dtype))
    const aOf = (k: number): number => pool + k * adapterBytes(s, dtype)
    const rowsOf = (g: number): number => rows + g * per * 4
    const hOf = (g: number): number => h + g * per * s.rank * 4
    const shrink = (g: number, k: number): void => ex.shrink(code, x, s.inF, rowsOf(g), per, aOf(k), s.rank, hOf(g))
    const expand = (g: number, k: number): void =>
      ex.expand(code, hOf(g), s.rank, 0, s.rank, aOf(k) + aBytes, s.out, y, s.out, 0, rowsOf(g), per)
    // cold: the next `batch` adapters of the pool, after a flush; >= 128 MiB of others since their last use
    let next = 0
    const cold = (kernels: ((g: number, k: number) => void)[]): number => {
      ex.readBytes(flushPtr, FLUSH_BYTES, 1)
      const c0 = performance.now()
      for (let g = 0; g < s.batch; g++) {
        const k = next++ % adapters
        for (const kernel of kernels) kernel(g, k)
      }
      return performance.now() - c0
    }
    // warm: segment g on adapter g, each run twice and the second timed
    const warm = (kernel: (g: number, k: number) => void): number => {
      let ms = 0
      for (let g = 0; g < s.batch; g++) {
        kernel(g, g)
        const c0 = performance.now()
        kernel(g, g)
        ms += performance.now() - c0
      }
      return ms
    }
    const run: Record<Cell, () => number> = {
      shrinkCold: () => cold([shrink]),
      shrinkWarm: () => warm(shrink),
      expandCold: () => cold([expand]),
      expandWarm: () => warm(expand),
      bothCold: () => cold([shrink, expand]),
    }
    const w0 = performance.now()
    for (let n = 0; n < 3 || performance.now() - w0 < WARMUP_MS; n++) cold([shrink, expand])
    const samples: Record<Cell, number[]> = { shrinkCold: [], shrinkWarm: [], expandCold: [], expandWarm: [], bothCold: [] }
    for (let r = 0; r < CALLS; r++)
      for (let i = 0; i < CELLS.length; i++) {
        const cell = CELLS[(r + i) % CELLS.length]
        samples[cell].push(run[cell]())
      }
    const ms = Object.fromEntries(CELLS.map((c) => [c, quantile(samples[c], 0.5)])) as Record<Cell, number>
    if (!mem.f32.subarray(y >> 2, (y >> 2) + s.T * s.out).every(Number.isFinite)) throw new Error(`${label} ${dtype}: y not finite`)
    measured.push({ shape: s, dtype, ms })
    log(
      `${label} ${dtype}: cold shrink ${ms.shrinkCold.toFixed(3)} expand ${ms.expandCold.toFixed(3)} both ${ms.bothCold.toFixed(3)}; warm shrink ${ms.shrinkWarm.toFixed(3)} expand ${ms.expandWarm.toFixed(3)} ms (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    )
  }
}

const end = measureCeilings(wasm)
const ceilings: Ceilings = { peakGflops: Math.max(start.peakGflops, end.peakGflops), readGBs: Math.max(start.readGBs, end.readGBs) }
log(`ceilings after: read ${end.readGBs.toFixed(1)} GB/s, f32x4 peak ${end.peakGflops.toFixed(1)} GFLOP/s`)
const results: Row[] = measured.map(({ shape: s, dtype, ms }) => {
  const floorMs = ms.shrinkWarm + ms.expandWarm
  const mulAdds = { shrink: s.T * s.rank * s.inF, expand: s.T * s.rank * s.out }
  const warmGflops = (2 * (mulAdds.shrink + mulAdds.expand)) / floorMs / 1e6
  const weightBytes = s.batch * adapterBytes(s, dtype)
  const ioBytes = s.T * (s.inF + 2 * s.out) * 4
  return {
    shape: s,
    dtype,
    perSegment: s.T / s.batch,
    driverDecodes: dtype !== 'f32' && s.T / s.batch >= decodeMin,
    ms,
    mulAdds,
    floorMs,
    warmGflops,
    fractionOfPeak: warmGflops / ceilings.peakGflops,
    weightBytes,
    ioBytes,
    memoryMs: (weightBytes + ioBytes) / ceilings.readGBs / 1e6,
    unhiddenMs: ms.bothCold - floorMs,
  }
})

const date = new Date().toISOString().slice(0, 10)
const cpu = cpus()[0]?.model ?? 'unknown CPU'
const run = {
  date,
  node: process.version,
  cpu,
  cores: cpus().length,
  wasmVariant: wasm.variant,
  calls: CALLS,
  decodeMin,
  ceilings: { start, end, used: ceilings },
  rows: results,
}
mkdirSync(dirname(jsonPath), { recursive: true })
writeFileSync(jsonPath, `${JSON.stringify(run, null, 1)}\n`)

const f = (v: number): string => (Math.abs(v) < 10 ? v.toFixed(3) : v.toPrecision(3))
const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
const head = [
  'T, rank, loaded / batch',
  'dtype',
  'shrink cold',
  'shrink warm',
  'expand cold',
  'expand warm',
  'both cold',
  'arithmetic floor',
  'cold − floor',
  'memory time',
  'weights MB',
  'M mul-adds',
  'warm GFLOP/s (of peak)',
]
const body = results.map((r) =>
  line([
    tableShapeLabel(r.shape),
    `${r.dtype}${r.driverDecodes ? ' †' : ''}`,
    f(r.ms.shrinkCold),
    f(r.ms.shrinkWarm),
    f(r.ms.expandCold),
    f(r.ms.expandWarm),
    f(r.ms.bothCold),
    f(r.floorMs),
    f(r.unhiddenMs),
    f(r.memoryMs),
    (r.weightBytes / 1e6).toFixed(1),
    ((r.mulAdds.shrink + r.mulAdds.expand) / 1e6).toFixed(1),
    `${r.warmGflops.toFixed(1)} (${(r.fractionOfPeak * 100).toFixed(0)}%)`,
  ]),
)
const md = [
  `<!-- generated by bench/kernel-split.ts from ${basename(jsonPath)} beside this file -->`,
  '',
  `\`npx tsx bench/kernel-split.ts\`, ${date}, ${cpu}, Node ${process.version}, wasm ${wasm.variant}, one thread; ceilings measured in the run`,
  `(best of before and after): f32x4 peak ${ceilings.peakGflops.toFixed(1)} GFLOP/s, read ${ceilings.readGBs.toFixed(1)} GB/s (one core).`,
  '',
  line(head),
  line(head.map(() => '---')),
  ...body,
  '',
  `Times in ms, median of ${CALLS} calls; the shrink and expand exports run per segment (T / batch entries each) as the driver runs them, without its scale. Cold: 64 MiB read before every call and weights rotated over >= 128 MiB of copies, so weights, x and y come from memory; warm: each segment's kernel run twice back to back, the second run timed, so its weights and rows of x and y come from cache.`,
  `Arithmetic floor = shrink warm + expand warm; warm GFLOP/s = 2 flops per multiply-add over that floor, and its fraction of the f32x4 peak. Weights MB: the batch's adapters, rank x (in + out) of the dtype.`,
  `Memory time = (weights + x read + y read and written) / the read bandwidth: the call's time if it only moved its bytes.`,
  `Cold − floor = both cold − arithmetic floor: the memory time the kernels did not hide behind arithmetic (0: all of it hidden; the memory time: none).`,
  `† bf16 segments of at least ${decodeMin} entries: the driver decodes the weights to f32 and runs the f32 kernels on them; these rows time the bf16 kernels directly.`,
  '',
].join('\n')
writeFileSync(mdPath, md)
process.stdout.write(md)
log(`wrote ${jsonPath} and ${mdPath} in ${((performance.now() - t0) / 1000).toFixed(0)} s`)
