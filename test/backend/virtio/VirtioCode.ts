import assert from 'node:assert/strict';

/** The stable code a VirtioError thrown by `fn` carries, or 'no error' (any other throw fails the test). */
export function virtioCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.equal((err as Error).name, 'VirtioError', String(err));
    return (err as { code: string }).code;
  }
  return 'no error';
}
