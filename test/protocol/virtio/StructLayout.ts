/** name → byte offset, and the total size, of a packed struct given as [name, bytes] fields in order. */
export function structLayout(fields: ReadonlyArray<readonly [string, number]>): {
  off: Record<string, number>;
  size: number;
} {
  const off: Record<string, number> = {};
  let at = 0;
  for (const [name, bytes] of fields) {
    off[name] = at;
    at += bytes;
  }
  return { off, size: at };
}
