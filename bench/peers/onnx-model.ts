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
