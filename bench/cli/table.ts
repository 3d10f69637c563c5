/**
 * `multilora bench --table [--json FILE]`: the mixed batches of the reference side-by-side table
 * (T tokens round-robin over D adapters, of L loaded; one slice, in = out = 4096 unless noted),
 * every contender on one thread unless named threaded: multilora f32 and bf16 (ordinary arrays,
 * then host arrays), the threaded multilora runtime (`threads: cores`), onnxruntime-node (one
 * session.run per segment, and all segments in one graph), tfjs-backend-wasm.
 * Cold caches: before every timed call 64 MiB are read (untimed) and each contender rotates over
 * copies of its adapters spread over >= 128 MiB, so weights, x and y come from memory, as in a
 * multi-layer forward. Contenders run in an order rotated every round; each is checked against
 * the float64 reference first. Reported per contender: median ms, GB/s moved (weights of the
 * dtype + x + y read and written) and its fraction of the read bandwidth measured in the same run.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { dirname } from 'node:path'
import { createRuntime, type HostArray, type Layer, type Runtime, type WeightDtype } from '../../src/index.js'
import { roundToDtype } from '../../src/dtype.js'
import { buildSegments, type SegmentPlan } from '../../src/metadata.js'
import { backendsOf } from '../../src/runtime.js'
import { WasmBackend } from '../../src/wasm/backend.js'
import { Rng } from '../../test/random.js'
import { type Ceilings, measureCeilings } from '../ceilings.js'
import type { CaseAdapter, CaseLayer, Peer, PeerRunner } from '../peers/types.js'
import { writeResultsMarkdown } from '../results-md.js'
import { TABLE_SHAPES, tableAdapterBytes as adapterBytes, tableMarkdown, type TableRun, type TableShape } from '../table-md.js'
import { CHECK_TOLERANCE, worstError } from './check.js'
import { DTYPES } from './grid.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const jsonPath = flag('--json') ?? 'bench/results/table.json'
const quick = args.includes('--quick')
/** --shapes 2,3: only those rows of TABLE_SHAPES (0-based), for a quick look at a few */
const only = flag('--shapes')?.split(',').map(Number)
const BUDGET_MS = quick ? 600 : 2500
const MIN_ROUNDS = quick ? 5 : 9
const MAX_ROUNDS = quick ? 9 : 41
const COLD_BYTES = 128 << 20
const FLUSH_BYTES = 64 << 20

const t0 = performance.now()
const cores = availableParallelism()
const rt1 = await createRuntime({ backend: 'wasm' })
const rtN = cores > 1 ? await createRuntime({ backend: 'wasm', threads: cores }) : null
const wasm = backendsOf(rt1).find((b) => b instanceof WasmBackend)!
const flushPtr = wasm.memory.alloc(FLUSH_BYTES)
wasm.memory.u8.fill(1, flushPtr, flushPtr + FLUSH_BYTES)
const flush = (): void => void wasm.exports.readBytes(flushPtr, FLUSH_BYTES, 1)
const ceilings: Ceilings[] = [measureCeilings(wasm)]
console.log(
  `multilora bench --table: ${cores} cores (${cpus()[0]?.model}); wasm ${rt1.wasmVariant}; threaded runtime: ${rtN ? `${rtN.threads} threads${rtN.threadsUnavailableReason ? ` (${rtN.threadsUnavailableReason})` : ''}` : 'none (one core)'}`,
)
console.log(`ceilings: read ${ceilings[0].readGBs.toFixed(1)} GB/s, f32x4 peak ${ceilings[0].peakGflops.toFixed(1)} GFLOP/s (one core)`)

interface Contender {
  id: string
  /** One call on the next copy of the weights. */
  call(): unknown
  /** Bytes of weights one call reads (its dtype). */
  weightBytes: number
}

const copiesOf = (s: TableShape, dtype: WeightDtype) => Math.max(1, Math.ceil(COLD_BYTES / (s.loaded * adapterBytes(s, dtype))))
/** Token t of copy c uses slot c * L + t % D: the first D of the copy's L loaded adapters. */
const idsOf = (s: TableShape, c: number) => Int32Array.from({ length: s.T }, (_, t) => c * s.loaded + (t % s.batch))

const median = (v: number[]) => [...v].sort((a, b) => a - b)[(v.length - 1) >> 1]
const rows: TableRun['rows'] = []
const peerErrors: Record<string, string> = {}
// the peers' modules are loaded here, not imported: where a peer library (or its model builder,
// onnx-proto) is not installed, that peer is listed as unavailable and the rest still run
const peers: Peer[] = []
for (const [file, name] of [
  ['ort', 'ortPeer'],
  ['ort-graph', 'ortGraphPeer'],
  ['ort-sessions', 'ortSessionsPeer'],
  ['tfjs', 'tfjsPeer'],
]) {
  try {
    peers.push((await import(`../peers/${file}.js`))[name] as Peer)
  } catch (e) {
    peerErrors[file] = String((e as Error)?.message ?? e).slice(0, 200)
  }
}

for (const s of TABLE_SHAPES.filter((_, i) => !only || only.includes(i))) {
  const label = `T=${s.T} r${s.rank} ${s.loaded}/${s.batch}${s.out !== 4096 ? ` ${s.inF}x${s.out}` : ''}`
  const rng = new Rng(s.rank * 977 + s.T)
  const distinct: CaseAdapter[] = Array.from({ length: s.batch }, () => ({
    rank: s.rank,
    scale: 2,
    A: [rng.array(s.rank * s.inF, 0.02)],
    B: [rng.array(s.out * s.rank, 0.02)],
  }))
  const dataOf = (slot: number) => distinct[(slot % s.loaded) % s.batch]
  const x = rng.array(s.T * s.inF)
  const contenders: Contender[] = []
  const checks: Record<string, number | string> = {}
  const disposers: (() => void)[] = []
  const ref: CaseLayer = { inF: s.inF, widths: [s.out], out: s.out, slots: [] }
  /** Check the contender's first call (y from zeros) against the reference; keep it if right. */
  const admit = async (
    id: string,
    refOf: (d: CaseAdapter) => CaseAdapter,
    run: (c: number) => unknown,
    y: Float32Array,
    copies: number,
    weightBytes: number,
  ) => {
    try {
      await run(0)
      ref.slots = Array.from({ length: s.loaded }, (_, k) => refOf(dataOf(k)))
      checks[id] = worstError(ref, x, idsOf(s, 0), y)
    } catch (e) {
      checks[id] = String((e as Error)?.message ?? e).slice(0, 200)
    }
    if (!((checks[id] as number) <= CHECK_TOLERANCE)) return
    let next = contenders.length * Math.max(1, Math.floor(copies / 9))
    contenders.push({ id, call: () => run(next++ % copies), weightBytes })
  }

  for (const [rt, threaded] of [[rt1, false], ...(rtN ? [[rtN, true]] : [])] as [Runtime, boolean][]) {
    for (const dtype of DTYPES) {
      const copies = copiesOf(s, dtype)
      const layer: Layer = rt.createLayer({
        inFeatures: s.inF,
        outFeatures: [s.out],
        maxAdapters: s.loaded * copies,
        maxRank: s.rank,
        weightDtype: dtype,
      })
      for (let k = 0; k < s.loaded * copies; k++) layer.setAdapter(k, dataOf(k))
      disposers.push(() => layer.dispose())
      const ids = Array.from({ length: copies }, (_, c) => idsOf(s, c))
      const refOf = (d: CaseAdapter) => ({ ...d, A: d.A.map((m) => roundToDtype(m, dtype)), B: d.B.map((m) => roundToDtype(m, dtype)) })
      const wb = s.batch * adapterBytes(s, dtype)
      const name = threaded ? `multilora ${dtype} ${rt.threads} threads` : `multilora ${dtype}`
      const y = new Float32Array(s.T * s.out)
      await admit(name, refOf, (c) => layer.apply(x, y, ids[c]), y, copies, wb)
      if (threaded) continue
      // host arrays: x and y in the runtime's memory, used in place (no copies in or out)
      const hx: HostArray = rt.hostArray(s.T * s.inF)
      const hy: HostArray = rt.hostArray(s.T * s.out)
      hx.array.set(x)
      disposers.push(() => (hx.release(), hy.release()))
      await admit(`${name} host`, refOf, (c) => layer.apply(hx.array, hy.array, ids[c]), hy.array, copies, wb)
    }
  }
  // peers: f32 copies in their own memory
  const peerCopies = copiesOf(s, 'f32')
  const peerLayer: CaseLayer = {
    inF: s.inF,
    widths: [s.out],
    out: s.out,
    slots: Array.from({ length: s.loaded * peerCopies }, (_, k) => {
      const d = dataOf(k)
      return { ...d, A: d.A.map((m) => new Float32Array(m)), B: d.B.map((m) => new Float32Array(m)) }
    }),
  }
  const plans: SegmentPlan[] = Array.from({ length: peerCopies }, (_, c) => buildSegments(idsOf(s, c), 1, peerLayer.slots.length, 1 << 30))
  for (const p of peers) {
    let runner: PeerRunner
    try {
      runner = await p.setup(peerLayer)
    } catch (e) {
      peerErrors[p.name] = String((e as Error)?.message ?? e)
      continue
    }
    disposers.push(() => runner.dispose())
    // one call per copy first: a library that caches per weight tensor (XNNPACK packs each tfjs
    // weight on first use) is timed in its steady state, as in serving
    for (let c = 0; c < peerCopies; c++) await runner.run(x, new Float32Array(s.T * s.out), plans[c])
    const y = new Float32Array(s.T * s.out)
    await admit(
      p.name,
      (d) => d,
      (c) => runner.run(x, y, plans[c]),
      y,
      peerCopies,
      s.batch * adapterBytes(s, 'f32'),
    )
  }

  // timed: rounds in rotated order, caches flushed before every call
  const times = contenders.map(() => [] as number[])
  const start = performance.now()
  for (let r = 0; r < MAX_ROUNDS && (r < MIN_ROUNDS || performance.now() - start < BUDGET_MS); r++) {
    for (let i = 0; i < contenders.length; i++) {
      const k = (i + r) % contenders.length
      flush()
      const c0 = performance.now()
      await contenders[k].call()
      times[k].push(performance.now() - c0)
    }
  }
  const ms: Record<string, number> = {}
  const gbs: Record<string, number> = {}
  contenders.forEach((c, k) => {
    ms[c.id] = median(times[k])
    gbs[c.id] = (c.weightBytes + 4 * s.T * (s.inF + 2 * s.out)) / ms[c.id] / 1e6
  })
  ceilings.push(measureCeilings(wasm))
  rows.push({ shape: s, ms, gbs, checks, rounds: times[0]?.length ?? 0, readGBs: ceilings.at(-1)!.readGBs })
  console.log(`${label}: ${contenders.map((c) => `${c.id} ${ms[c.id].toFixed(3)}`).join(', ')}`)
  const failed = Object.entries(checks).filter(([, e]) => !(typeof e === 'number' && e <= CHECK_TOLERANCE))
  if (failed.length) console.log(`  checks failed (not timed): ${failed.map(([id, e]) => `${id}: ${e}`).join('; ')}`)
  for (const d of disposers) d()
}

const run: TableRun = {
  date: new Date().toISOString(),
  node: process.version,
  cores,
  cpu: cpus()[0]?.model ?? '',
  wasmVariant: rt1.wasmVariant ?? '',
  threads: rtN?.threads ?? 1,
  ceilings,
  rows,
  peerErrors,
  seconds: (performance.now() - t0) / 1000,
}
if (Object.keys(peerErrors).length) console.log(`peers unavailable: ${JSON.stringify(peerErrors)}`)
mkdirSync(dirname(jsonPath), { recursive: true })
writeFileSync(jsonPath, JSON.stringify(run, null, 1))
writeFileSync(jsonPath.replace(/\.json$/, '.md'), tableMarkdown(run))
if (jsonPath === 'bench/results/table.json') writeResultsMarkdown()
console.log(`wrote ${jsonPath} and its .md in ${run.seconds.toFixed(0)} s`)
wasm.memory.release(flushPtr)
rt1.dispose()
rtN?.dispose()
