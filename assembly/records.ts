// The records the host writes into linear memory, as src/wasm/records.ts defines them (that file is
// the definition; test/records.test.ts checks that every value here agrees with it).

// The `dtype` argument of every export.
export const DTYPE_F32: i32 = 0
export const DTYPE_BF16: i32 = 1
export const DTYPE_F16: i32 = 2

// Segment record: i32 (slot, first entry, entries).
export const SEGMENT_BYTES: i32 = 12

// Slot record: i32 rank, f32 scale, u32 address of A, u32 address of B^T.
export const SLOT_BYTES: i32 = 16

// Threads' shrink task: i32 (segment, first entry in it, entries, first A row, end A row).
export const TASK_FIELDS: i32 = 5
