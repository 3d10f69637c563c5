/**
 * The LoRA models of the onnxruntime peers, built in code with onnx-proto. Weights come in the
 * form MLAS multiplies fastest, made once per adapter (peers/ort.ts ortWeights):
 *
 *   At   = A^T [in, S*r]          (A of every slice stacked, transposed once)
 *   Bt_s = scale * B_s^T [r, n_s] (the scale folded in once)
 *
 * so each product is a plain MatMul or Gemm (no transB, which makes MLAS transpose B on every call,
 * and no Mul pass for the scale). One segment of m tokens:
 *
 *   H = MatMul(X [m, in], At)
 *   H_0..H_{S-1} = Split(H, axis=1)            (only when S > 1)
 *   Z_s = Gemm(H_s, Bt_s, C = Y_s [m, n_s])    (Y_s + the delta; MatMul + Add fused)
 *
 * Sizes are symbolic dimensions unless a weight is an initializer.
 */
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type Node = onnxProto.onnx.INodeProto
type Value = onnxProto.onnx.IValueInfoProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
const INT = onnx.AttributeProto.AttributeType.INT

function value(name: string, dims: (string | number)[], type = FLOAT): Value {
  return {
    name,
    type: { tensorType: { elemType: type, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  }
}

function encode(name: string, node: Node[], input: Value[], output: Value[], initializer: onnxProto.onnx.ITensorProto[] = []): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 18 }],
    producerName: 'multilora-bench',
    graph: { name, node, input, output, initializer },
  })
  return onnx.ModelProto.encode(model).finish()
}

/**
 * The nodes of one segment: x [m, in] -> outputs[s] = MatMul(x, at) split per slice, times bt[s],
 * plus ys[s] where given (Gemm with C), else the bare delta (MatMul).
 */
function segmentNodes(p: string, x: string, at: string, bt: string[], ys: string[] | null, outputs: string[]): Node[] {
  const S = bt.length
  const nodes: Node[] = [{ opType: 'MatMul', input: [x, at], output: [`H${p}`] }]
  const hs = S === 1 ? [`H${p}`] : bt.map((_, s) => `H${p}_${s}`)
  if (S > 1) {
    nodes.push({
      opType: 'Split',
      input: [`H${p}`],
      output: hs,
      attribute: [
        { name: 'axis', type: INT, i: 1 },
        { name: 'num_outputs', type: INT, i: S },
      ],
    })
  }
  for (let s = 0; s < S; s++) {
    nodes.push(
      ys
        ? { opType: 'Gemm', input: [hs[s], bt[s], ys[s]], output: [outputs[s]] }
        : { opType: 'MatMul', input: [hs[s], bt[s]], output: [outputs[s]] },
    )
  }
  return nodes
}

/** One segment, weights as inputs: X [m, in], At [in, sr], Bt_s [r, n_s], Y_s [m, n_s] -> Z_s [m, n_s]. */
export function loraModel(slices: number): Uint8Array {
  const ss = Array.from({ length: slices }, (_, s) => s)
  const inputs = [value('X', ['m', 'in']), value('At', ['in', 'sr'])]
  for (const s of ss) inputs.push(value(`Bt_${s}`, ['r', `n${s}`]), value(`Y_${s}`, ['m', `n${s}`]))
  const nodes = segmentNodes(
    '',
    'X',
    'At',
    ss.map((s) => `Bt_${s}`),
    ss.map((s) => `Y_${s}`),
    ss.map((s) => `Z_${s}`),
  )
  return encode(
    'lora',
    nodes,
    inputs,
    ss.map((s) => value(`Z_${s}`, ['m', `n${s}`])),
  )
}

/**
 * One adapter with its weights as initializers (`at` [in, S*r], `bt[s]` [r, n_s]), so that
 * onnxruntime prepacks them for MLAS when the session is created, as for a model with the adapter
 * baked in: X [m, in], Y_s [m, n_s] -> Z_s [m, n_s].
 */
export function loraAdapterModel(inF: number, widths: number[], rank: number, at: Float32Array, bt: Float32Array[]): Uint8Array {
  const S = widths.length
  const tensor = (name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto => ({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  })
  const ss = widths.map((_, s) => s)
  const nodes = segmentNodes(
    '',
    'X',
    'At',
    ss.map((s) => `Bt_${s}`),
    ss.map((s) => `Y_${s}`),
    ss.map((s) => `Z_${s}`),
  )
  return encode(
    'lora_adapter',
    nodes,
    [value('X', ['m', inF]), ...ss.map((s) => value(`Y_${s}`, ['m', widths[s]]))],
    ss.map((s) => value(`Z_${s}`, ['m', widths[s]])),
    [tensor('At', [inF, S * rank], at), ...ss.map((s) => tensor(`Bt_${s}`, [rank, widths[s]], bt[s]))],
  )
}

/**
 * A whole call of `segments` segments in one graph, on the caller's x and y as they are:
 *
 *   X_g = Gather(X [T, in], I_g [m_g])             (the rows of segment g)
 *   D_g_s = MatMul(Split(MatMul(X_g, At_g)), Bt_g_s)
 *   D = Concat over g, then over slices           ([N, out], entries in plan order)
 *   Z = ScatterND(Y [T, out], R [N, 1], D, reduction = add)
 *
 * so one session.run does the gather, both products and the scatter-add natively (R holds every
 * entry's row, I_g the rows of segment g).
 */
export function loraCallModel(widths: number[], segments: number): Uint8Array {
  const ss = widths.map((_, s) => s)
  const inputs = [value('X', ['T', 'in']), value('Y', ['T', 'out']), value('R', ['N', 1], INT64)]
  const nodes: Node[] = []
  for (let g = 0; g < segments; g++) {
    inputs.push(value(`I_${g}`, [`m${g}`], INT64), value(`At_${g}`, ['in', `sr${g}`]))
    for (const s of ss) inputs.push(value(`Bt_${g}_${s}`, [`r${g}`, `n${s}`]))
    nodes.push({ opType: 'Gather', input: ['X', `I_${g}`], output: [`X_${g}`], attribute: [{ name: 'axis', type: INT, i: 0 }] })
    nodes.push(
      ...segmentNodes(
        `_${g}`,
        `X_${g}`,
        `At_${g}`,
        ss.map((s) => `Bt_${g}_${s}`),
        null,
        ss.map((s) => `D_${g}_${s}`),
      ),
    )
  }
  const concat = (input: string[], output: string, axis: number): Node =>
    input.length === 1
      ? { opType: 'Identity', input, output: [output] }
      : { opType: 'Concat', input, output: [output], attribute: [{ name: 'axis', type: INT, i: axis }] }
  for (const s of ss)
    nodes.push(
      concat(
        Array.from({ length: segments }, (_, g) => `D_${g}_${s}`),
        `D_${s}`,
        0,
      ),
    )
  nodes.push(
    concat(
      ss.map((s) => `D_${s}`),
      'D',
      1,
    ),
  )
  nodes.push({
    opType: 'ScatterND',
    input: ['Y', 'R', 'D'],
    output: ['Z'],
    attribute: [{ name: 'reduction', type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode('add') }],
  })
  return encode('lora_call', nodes, inputs, [value('Z', ['T', 'out'])])
}
