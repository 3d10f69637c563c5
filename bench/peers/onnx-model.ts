/**
 * The generic LoRA model for onnxruntime, built in code with onnx-proto: for S output slices
 *
 *   H = Gemm(X [m, in], A [S*r, in], transB=1)      (A of every slice stacked, as stored)
 *   H = Mul(H, scale [1])
 *   H_0..H_{S-1} = Split(H, axis=1, num_outputs=S)  (only when S > 1)
 *   Z_s = Gemm(H_s, B_s [n_s, r], C = Y_s [m, n_s], transB=1)
 *
 * Every size is a symbolic dimension: one model serves every segment of every adapter.
 */
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT

function input(name: string, dims: (string | number)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  }
}

export function loraModel(slices: number): Uint8Array {
  const S = slices
  const nodes: onnxProto.onnx.INodeProto[] = [
    {
      opType: 'Gemm',
      input: ['X', 'A'],
      output: ['H0'],
      attribute: [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
    },
    { opType: 'Mul', input: ['H0', 'scale'], output: ['H'] },
  ]
  const hs = S === 1 ? ['H'] : Array.from({ length: S }, (_, s) => `H_${s}`)
  if (S > 1) {
    nodes.push({
      opType: 'Split',
      input: ['H'],
      output: hs,
      attribute: [
        { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
        { name: 'num_outputs', type: onnx.AttributeProto.AttributeType.INT, i: S },
      ],
    })
  }
  const inputs = [input('X', ['m', 'in']), input('A', ['sr', 'in']), input('scale', [1])]
  const outputs: onnxProto.onnx.IValueInfoProto[] = []
  for (let s = 0; s < S; s++) {
    nodes.push({
      opType: 'Gemm',
      input: [hs[s], `B_${s}`, `Y_${s}`],
      output: [`Z_${s}`],
      attribute: [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
    })
    inputs.push(input(`B_${s}`, [`n${s}`, 'r']), input(`Y_${s}`, ['m', `n${s}`]))
    outputs.push(input(`Z_${s}`, ['m', `n${s}`]))
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 18 }],
    producerName: 'multilora-bench',
    graph: { name: 'lora', node: nodes, input: inputs, output: outputs },
  })
  return onnx.ModelProto.encode(model).finish()
}

/**
 * The same computation for `segments` segments in one graph (one session.run per call instead of
 * one per segment): inputs X_g, A_g, scale_g, B_g_s, Y_g_s per segment g, outputs Z_g_s. The
 * weights are fed as tensors over the arrays that hold them (no copy), so a call on cold weights
 * reads each adapter once, as the per-segment runs do.
 */
export function loraSegmentsModel(slices: number, segments: number): Uint8Array {
  const S = slices
  const nodes: onnxProto.onnx.INodeProto[] = []
  const inputs: onnxProto.onnx.IValueInfoProto[] = []
  const outputs: onnxProto.onnx.IValueInfoProto[] = []
  const transB = [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]
  for (let g = 0; g < segments; g++) {
    nodes.push({ opType: 'Gemm', input: [`X_${g}`, `A_${g}`], output: [`H0_${g}`], attribute: transB })
    nodes.push({ opType: 'Mul', input: [`H0_${g}`, `scale_${g}`], output: [`H_${g}`] })
    const hs = S === 1 ? [`H_${g}`] : Array.from({ length: S }, (_, s) => `H_${g}_${s}`)
    if (S > 1) {
      nodes.push({
        opType: 'Split',
        input: [`H_${g}`],
        output: hs,
        attribute: [
          { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
          { name: 'num_outputs', type: onnx.AttributeProto.AttributeType.INT, i: S },
        ],
      })
    }
    inputs.push(input(`X_${g}`, [`m${g}`, 'in']), input(`A_${g}`, [`sr${g}`, 'in']), input(`scale_${g}`, [1]))
    for (let s = 0; s < S; s++) {
      nodes.push({ opType: 'Gemm', input: [hs[s], `B_${g}_${s}`, `Y_${g}_${s}`], output: [`Z_${g}_${s}`], attribute: transB })
      inputs.push(input(`B_${g}_${s}`, [`n${s}`, `r${g}`]), input(`Y_${g}_${s}`, [`m${g}`, `n${s}`]))
      outputs.push(input(`Z_${g}_${s}`, [`m${g}`, `n${s}`]))
    }
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 18 }],
    producerName: 'multilora-bench',
    graph: { name: 'lora_segments', node: nodes, input: inputs, output: outputs },
  })
  return onnx.ModelProto.encode(model).finish()
}

/**
 * One adapter's LoRA as a model of its own: A (every slice stacked, [S*r, in]), the scale and
 * B_s ([n_s, r]) are initializers, so that onnxruntime prepacks them for its GEMM at session
 * creation (the form a model with one adapter baked in has). Inputs X [m, in], Y_s [m, n_s];
 * outputs Z_s = Y_s + scale * (X A^T)_s B_s^T.
 */
export function loraAdapterModel(
  inF: number,
  widths: number[],
  rank: number,
  scale: number,
  A: Float32Array[],
  B: Float32Array[],
): Uint8Array {
  const S = widths.length
  const stacked = new Float32Array(S * rank * inF)
  A.forEach((m, s) => stacked.set(m, s * rank * inF))
  const tensor = (name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto => ({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  })
  const initializer = [tensor('A', [S * rank, inF], stacked), tensor('scale', [1], Float32Array.of(scale))]
  const transB = [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]
  const nodes: onnxProto.onnx.INodeProto[] = [
    { opType: 'Gemm', input: ['X', 'A'], output: ['H0'], attribute: transB },
    { opType: 'Mul', input: ['H0', 'scale'], output: ['H'] },
  ]
  const hs = S === 1 ? ['H'] : Array.from({ length: S }, (_, s) => `H_${s}`)
  if (S > 1) {
    nodes.push({
      opType: 'Split',
      input: ['H'],
      output: hs,
      attribute: [
        { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
        { name: 'num_outputs', type: onnx.AttributeProto.AttributeType.INT, i: S },
      ],
    })
  }
  const inputs = [input('X', ['m', inF])]
  const outputs: onnxProto.onnx.IValueInfoProto[] = []
  for (let s = 0; s < S; s++) {
    initializer.push(tensor(`B_${s}`, [widths[s], rank], B[s]))
    nodes.push({ opType: 'Gemm', input: [hs[s], `B_${s}`, `Y_${s}`], output: [`Z_${s}`], attribute: transB })
    inputs.push(input(`Y_${s}`, ['m', widths[s]]))
    outputs.push(input(`Z_${s}`, ['m', widths[s]]))
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 18 }],
    producerName: 'multilora-bench',
    graph: { name: 'lora_adapter', node: nodes, input: inputs, output: outputs, initializer },
  })
  return onnx.ModelProto.encode(model).finish()
}
