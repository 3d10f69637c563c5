import { expect } from 'vitest'
import { LoraError, type LoraErrorCode } from '../src/errors.js'
import type { WeightDtype } from '../src/types.js'

/**
 * Tolerances, stated once: the largest allowed relative error of the LoRA delta,
 * max_i |got_i - ref_i| / max_i |ref_i|, per weight dtype. Weights are compared against the
 * reference computed on the rounded weights, so every dtype does f32 math on the same numbers;
 * the accumulation order is all that differs.
 */
export const TOLERANCE: Record<WeightDtype, number> = { f32: 1e-5, bf16: 1e-5, f16: 1e-5 }

/**
 * Check y_after = y_before + delta: the error of the delta, less the one unavoidable rounding of
 * the f32 output (half an ulp of |y_after|, at most 2^-24 |y_after|), must be within `tol` times
 * the largest |delta|. Without that allowance a small delta added to a large y could never pass:
 * y = 0.7 + 7e-4 already carries 3e-8 of output rounding, 4e-5 of such a delta.
 * On failure the message names the worst index and both values.
 * `magnitude`, where given, is the largest entry of the same sum taken over absolute values
 * (|B| |A| |x|): the size that f32 rounding is proportional to. A delta that cancels (one large
 * weight times a small, cancelling x A) can carry more rounding than its own size allows; the
 * error is then measured against that magnitude instead.
 */
export function expectDelta(
  yAfter: Float32Array,
  yBefore: Float32Array,
  delta: Float64Array,
  tol: number,
  label = '',
  magnitude = 0,
): void {
  expect(yAfter.length, `${label} length`).toBe(delta.length)
  let scale = magnitude
  for (let i = 0; i < delta.length; i++) scale = Math.max(scale, Math.abs(delta[i]))
  let worst = 0
  let worstErr = 0
  for (let i = 0; i < delta.length; i++) {
    const raw = Math.abs(yAfter[i] - yBefore[i] - delta[i])
    const err = Number.isNaN(raw) ? Infinity : Math.max(0, raw - Math.abs(yAfter[i]) * 2 ** -24)
    if (err > worstErr) {
      worstErr = err
      worst = i
      if (worstErr === Infinity) break
    }
  }
  const rel = scale > 0 ? worstErr / scale : worstErr
  if (!(rel <= tol)) {
    const i = worst
    throw new Error(
      `${label} relative error ${rel.toExponential(3)} > ${tol} at index ${i}: got delta ${yAfter[i] - yBefore[i]} ` +
        `(y ${yBefore[i]} -> ${yAfter[i]}), reference ${delta[i]} (max |delta| ${scale})`,
    )
  }
}

/** Rows whose delta is exactly zero in the reference (tokens with no adapter) must be untouched. */
export function expectUntouchedRows(yAfter: Float32Array, yBefore: Float32Array, ids: Int32Array, K: number, out: number): void {
  const T = ids.length / K
  for (let t = 0; t < T; t++) {
    let any = false
    for (let k = 0; k < K; k++) if (ids[t * K + k] >= 0) any = true
    if (any) continue
    for (let j = 0; j < out; j++) {
      const i = t * out + j
      if (!Object.is(yAfter[i], yBefore[i])) {
        throw new Error(`row ${t} has no adapter but y[${i}] changed: ${yBefore[i]} -> ${yAfter[i]}`)
      }
    }
  }
}

/** Run `fn` and check it throws (or rejects with) a LoraError of `code` whose message matches (a RegExp, or strings it must contain). */
export async function expectLoraError(fn: () => unknown, code: LoraErrorCode, message?: RegExp | string[]): Promise<LoraError> {
  let caught: unknown
  try {
    await fn()
  } catch (e) {
    caught = e
  }
  expect(caught, `expected LoraError ${code}`).toBeInstanceOf(LoraError)
  expect((caught as LoraError).code, (caught as Error).message).toBe(code)
  if (message instanceof RegExp) expect((caught as LoraError).message).toMatch(message)
  else for (const m of message ?? []) expect((caught as LoraError).message).toContain(m)
  return caught as LoraError
}
