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

/**
 * Open fds once the ended Workers' threads are gone: a Worker's runtime closes its own fds after
 * its last message, so wait (at most 5 s) for the count to come back to `before`.
 */
export async function fdsAfterWorkers(before: number): Promise<number> {
  const until = Date.now() + 5000;
  let n = openFds();
  while (n > before && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    n = openFds();
  }
  return n;
}

/** What {@linkcode runBounded} saw. */
export interface BoundedRun {
  /** Exit code (meaningless when `timedOut`). */
  code: number;
  /** True when the process was killed at the time limit. */
  timedOut: boolean;
  /** Standard output, decoded. */
  stdout: string;
  /** Standard error, decoded. */
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

/**
 * Runs a program to completion with stdin closed, killing it (SIGKILL) after `timeoutMs`: a
 * test that runs a child never hangs.
 *
 * @example
 * ```ts ignore
 * import { runBounded } from "./helpers.ts";
 * const run = await runBounded("true", [], { timeoutMs: 1000 });
 * console.assert(run.code === 0 && !run.timedOut);
 * ```
 */
export async function runBounded(
  program: string,
  args: string[],
  options: { timeoutMs: number; cwd?: string },
): Promise<BoundedRun> {
  const started = performance.now();
  const child = new Deno.Command(program, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, options.timeoutMs);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      timedOut,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      ms: performance.now() - started,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** An example program running as a child process (see {@linkcode startExample}). */
export interface ExampleProcess {
  /** What the watched stream printed up to and including the ready line. */
  readonly ready: string;
  /** Waits for the exit; returns the exit code and all of stdout and stderr. */
  finish(): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Kills the child if it still runs and waits for it. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Runs `deno run -A --no-check examples/<name>.ts ...args` and waits until its `stream` shows a
 * line matching `ready` (or ends). The child is killed after `timeoutMs` (never hangs a test).
 */
export async function startExample(
  name: string,
  args: string[],
  stream: "stdout" | "stderr",
  ready: RegExp,
  timeoutMs = 240_000,
): Promise<ExampleProcess> {
  const path = new URL(`../examples/${name}.ts`, import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", path, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const other = new Response(stream === "stdout" ? child.stderr : child.stdout).text();
  const reader = child[stream].pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    if (ready.test(text)) break;
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const readyText = text;
  return {
    ready: readyText,
    async finish() {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const { code } = await child.status;
      const rest = await other;
      return stream === "stdout"
        ? { code, stdout: text, stderr: rest }
        : { code, stdout: rest, stderr: text };
    },
    async [Symbol.asyncDispose]() {
      clearTimeout(killer);
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await reader.cancel().catch(() => {});
      await other.catch(() => "");
    },
  };
}
