/**
 * Assertion and resource helpers the test files share (only `node:assert`, no `jsr:` imports).
 *
 * @module
 */

import assert from "node:assert/strict";

/**
 * Deep equality (`assert.deepStrictEqual`).
 *
 * @example
 * ```ts
 * assertEquals([1, 2], [1, 2]);
 * ```
 */
export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/**
 * Identity (`assert.strictEqual`).
 *
 * @example
 * ```ts
 * assertStrictEquals(1 + 1, 2);
 * ```
 */
export function assertStrictEquals(actual: unknown, expected: unknown, message?: string): void {
  assert.strictEqual(actual, expected, message);
}

/**
 * `fn` throws an instance of `cls` whose message contains `includes`.
 *
 * @example
 * ```ts
 * assertThrows(() => new Uint8Array(-1), RangeError, "length");
 * ```
 */
export function assertThrows(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => Error,
  includes: string,
): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
  assert.ok(err.message.includes(includes), `"${err.message}" does not contain "${includes}"`);
}

/**
 * Number of fds this process has open, from `/proc/self/fd` (FFI fds are invisible to Deno's
 * resource sanitizer; workers share the fd table). The listing's own fd counts the same each time.
 *
 * @example
 * ```ts
 * const before = openFds();
 * // ... open and close things ...
 * assertEquals(openFds(), before, "fds leaked");
 * ```
 */
export function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}
