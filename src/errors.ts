/** Machine-readable reason attached to every {@link LoraError}. */
export type LoraErrorCode =
  | 'INVALID_ARGUMENT' // a value of the wrong type, sign, or not finite
  | 'SHAPE_MISMATCH' // an array whose length does not match the shape it must have
  | 'OUT_OF_RANGE' // a slot, id, rank or size outside its allowed range
  | 'SLOT_EMPTY' // apply on a slot that holds no adapter
  | 'DUPLICATE_ADAPTER' // one token names the same slot twice
  | 'UNKNOWN_BACKEND' // a backend name that does not exist
  | 'BACKEND_UNAVAILABLE' // a backend that exists but is not available here
  | 'UNSUPPORTED_DTYPE' // a weight dtype that is not f32, bf16 or f16
  | 'VALUE_OUT_OF_RANGE' // a weight that does not fit the layer's weight dtype
  | 'DISPOSED' // a call on a disposed runtime or layer
  | 'OUT_OF_MEMORY' // linear memory or the GPU could not hold the data
  | 'DEVICE_LOST' // the WebGPU device was lost
  | 'GPU_ERROR' // a WebGPU validation or internal error
  | 'WASM_LOAD_FAILED' // the WebAssembly module could not be found or instantiated
  | 'INVALID_FILE' // a malformed safetensors or adapter_config.json file
  | 'UNSUPPORTED_FEATURE' // a PEFT feature this library does not implement
  | 'NOT_FOUND' // an adapter, module or file that does not exist

/**
 * The one error type the library throws for bad input or failed operations.
 * `code` says what kind of failure it is; `message` names the argument and its shape.
 */
export class LoraError extends Error {
  readonly code: LoraErrorCode
  constructor(code: LoraErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options)
    this.name = 'LoraError'
    this.code = code
  }
}

/** Short description of a value for error messages: type, and length for arrays. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name ?? 'TypedArray'
    return `${name}[${(value as unknown as { length: number }).length ?? value.byteLength}]`
  }
  if (Array.isArray(value)) return `Array[${value.length}]`
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  return typeof value
}
