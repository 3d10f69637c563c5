/**
 * The tests' own safetensors reader, independent of src/peft/safetensors.ts: what a file holds,
 * as the tests expect the library to read it.
 */

/**
 * A safetensors file, read without the library: 8 bytes of header length (little-endian),
 * the JSON header ({ name: { dtype, shape, data_offsets } }), then the data. F32, F16 and BF16
 * decoded to float32 by plain arithmetic.
 */
export function readTensors(bytes: Uint8Array): Map<string, { dtype: string; shape: number[]; data: Float32Array }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = Number(view.getBigUint64(0, true))
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >
  const out = new Map<string, { dtype: string; shape: number[]; data: Float32Array }>()
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const at = 8 + n + t.data_offsets[0]
    const count = t.shape.reduce((a, b) => a * b, 1)
    const data = new Float32Array(count)
    for (let i = 0; i < count; i++) {
      if (t.dtype === 'F32') data[i] = view.getFloat32(at + 4 * i, true)
      else if (t.dtype === 'BF16') data[i] = new Float32Array(Uint32Array.of(view.getUint16(at + 2 * i, true) * 65536).buffer)[0]
      else if (t.dtype === 'F16') {
        const h = view.getUint16(at + 2 * i, true)
        const e = (h >> 10) & 31,
          m = h & 1023,
          s = h & 0x8000 ? -1 : 1
        data[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15)
      } else throw new Error(`unexpected dtype ${t.dtype}`)
    }
    out.set(name, { dtype: t.dtype, shape: t.shape, data })
  }
  return out
}
