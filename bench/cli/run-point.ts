/**
 * One grid point (a group's layers at one T): contenders built, each checked against the float64
 * reference on a sample of rows, then timed side by side.
 */
import type { Layer, Runtime, WeightDtype } from '../../src/index.js'
import type { CaseLayer, PeerRunner } from '../peers/types.js'
import { CHECK_TOLERANCE, worstError } from './check.js'
import { copiesOf, type Group, Rotation } from './grid.js'
import { type Contender, interleave, type PairedRatio, pairedRatio, type RoundOptions, type Timing } from './measure.js'

export interface PointLayers {
  /** The runtime's layer of each dtype (weights on every backend). */
  layers: Record<WeightDtype, Layer>
  /** The reference adapters of each dtype (D slots: rounded to the dtype). */
  refs: Record<WeightDtype, CaseLayer>
  /** Peers set up on the f32 copies. */
  peers: { name: string; runner: PeerRunner; maxTokens: number }[]
  peerSlots: number
}

export interface PointResult {
  T: number
  timings: Timing[]
  /** contender id -> worst relative error of its checked output (or the error it threw). */
  checks: Record<string, number | string>
  /** Per dtype: time(auto) / time(best forced backend) from back-to-back pairs, and that backend. */
  regret: Record<string, PairedRatio & { best: string }>
  /** Per dtype: the dispatcher's choice and predictions for this point. */
  decisions: Record<string, { backend: string; predictedMs: Record<string, number>; reason: string }>
}

/**
 * @param estimate extrapolated ms of a contender at this T (from the group's previous point): one
 *   predicted above `capMs` is left out (noted in checks), to keep slow paths (a software GPU, the
 *   JS loop) from dominating the run time.
 */
export async function runPoint(
  rt: Runtime,
  g: Group,
  T: number,
  pl: PointLayers,
  rng: () => number,
  o: RoundOptions,
  estimate: (id: string) => number | undefined,
  capMs: number,
): Promise<PointResult> {
  const { inF, widths } = g.shape
  const out = widths.reduce((a, b) => a + b, 0)
  const x = Float32Array.from({ length: T * inF }, () => rng() * 2 - 1)
  const contenders: Contender[] = []
  const checks: Record<string, number | string> = {}
  const warm = new Map<string, number>()
  const decisions: PointResult['decisions'] = {}
  const pairFor: Record<string, (backend: string, half: 0 | 1) => Contender> = {}
  let lane = 0

  /** Check a contender's output on copy 0 (this call doubles as its warm-up), keep it if it is right. */
  const tooSlow = (id: string): boolean => {
    const est = estimate(id)
    if (est === undefined || est <= capMs) return false
    checks[id] = `not run: extrapolated ${est.toFixed(0)} ms per call > ${capMs} ms`
    return true
  }
  const add = async (id: string, ref: CaseLayer, rot: Rotation, call: (y: Float32Array, ids: Int32Array) => unknown): Promise<void> => {
    if (tooSlow(id)) return
    const y0 = new Float32Array(T * out)
    try {
      const t0 = performance.now()
      await call(y0, rot.ids[0])
      warm.set(id, performance.now() - t0)
      const err = worstError(ref, x, rot.ids[0], y0)
      checks[id] = err
      if (!(err <= CHECK_TOLERANCE)) return
    } catch (e) {
      checks[id] = String((e as Error)?.message ?? e).slice(0, 200)
      return
    }
    const y = new Float32Array(T * out)
    contenders.push({ id, call: () => call(y, rot.nextIds()) })
  }

  for (const dtype of Object.keys(pl.layers) as WeightDtype[]) {
    const layer = pl.layers[dtype]
    const copies = copiesOf(g, dtype)
    const d = rt.explain({ tokens: T, adapters: g.distinct, rank: g.rank, inFeatures: inF, outFeatures: widths, weightDtype: dtype })
    decisions[dtype] = { backend: d.backend, predictedMs: d.predictedMs as Record<string, number>, reason: d.reason }
    // 'auto' right before the backends: in the rotated round order it then runs next to each
    // forced backend, which the regret compares it with round by round
    for (const backend of ['auto', ...rt.backends] as const) {
      const rot = new Rotation(T, g.distinct, copies, g.distinct * copies, lane++)
      await add(`${backend}/${dtype}`, pl.refs[dtype], rot, (y, ids) => layer.apply(x, y, ids, { backend }))
    }
    // the regret's pair: 'auto' and one forced backend on rotations half the copies apart, so
    // that neither reads weights the other just pulled into the cache (both advance alike)
    pairFor[dtype] = (backend: string, half: 0 | 1) => {
      const rot = new Rotation(T, g.distinct, copies, g.distinct * copies, 0, half * Math.floor(copies / 2))
      const y = new Float32Array(T * out)
      return { id: `${backend}/${dtype}`, call: () => layer.apply(x, y, rot.nextIds(), { backend: backend as 'auto' }) }
    }
  }
  for (const p of pl.peers) {
    if (T > p.maxTokens || tooSlow(p.name)) continue
    const rot = new Rotation(T, g.distinct, pl.peerSlots / g.distinct, pl.peerSlots, lane++)
    const id = p.name
    const y0 = new Float32Array(T * out)
    try {
      const t0 = performance.now()
      await p.runner.run(x, y0, rot.nextPlan())
      warm.set(id, performance.now() - t0)
      checks[id] = worstError(pl.refs.f32, x, rot.ids[0], y0)
    } catch (e) {
      checks[id] = String((e as Error)?.message ?? e).slice(0, 200)
    }
    if (!((checks[id] as number) <= CHECK_TOLERANCE)) continue
    const y = new Float32Array(T * out)
    contenders.push({ id, call: () => p.runner.run(x, y, rot.nextPlan()) })
  }
  const timings = await interleave(contenders, { ...o, warm })
  // the regret, refined: auto against the fastest forced backend, call pairs back to back
  const regret: PointResult['regret'] = {}
  for (const dtype of Object.keys(pl.layers)) {
    const forced = timings.filter((t) => t.id.endsWith(`/${dtype}`) && !t.id.startsWith('auto/') && t.samples > 1)
    const auto = contenders.find((c) => c.id === `auto/${dtype}`)
    if (!forced.length || !auto) continue
    const best = forced.reduce((p, q) => (q.ms < p.ms ? q : p))
    const pair = pairFor[dtype]
    const r = await pairedRatio(pair('auto', 0), pair(best.id.split('/')[0], 1), {
      budgetMs: o.budgetMs,
      minPairs: 7,
      maxPairs: 41,
      callMs: best.ms,
    })
    regret[dtype] = { ...r, best: best.id.split('/')[0] }
  }
  return { T, timings, checks, decisions, regret }
}
