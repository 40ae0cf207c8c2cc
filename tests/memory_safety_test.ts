/**
 * The driver never crashes its process: views over shared memory die with the port, the memfd
 * cannot be shrunk under us, and buffer numbers from the caller are checked.
 *
 * ```
 *   child: open port, keep views, close(), misuse them  ──► exit 0 and a JSON report, never 139
 *   memfd: F_SEAL_SHRINK                                 ──► ftruncate by anyone: EPERM
 *   pool:  out of range / double free / double submit    ──► BufferError, nothing changed
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { runBounded } from "./helpers.ts";
import { BufferError, BufferPool } from "../lib/driver/buffer_pool.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { F_SEAL_SHRINK, ftruncate, getSeals } from "../ffi/memory.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

Deno.test("use after close: a JS error or nothing, never SIGSEGV (child process)", async () => {
  const run = await runBounded(
    Deno.execPath(),
    ["run", "-A", "--unstable-ffi", "tests/fixtures/use_after_close.ts"],
    { cwd: ROOT, timeoutMs: 60_000 },
  );
  assert.ok(!run.timedOut, "the child finished");
  assert.notEqual(run.code, 139, `SIGSEGV; stderr:\n${run.stderr}`);
  assert.equal(run.code, 0, `child exit code; stderr:\n${run.stderr}`);
  const outcome = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
  assert.match(outcome["port.pool.bytes[100]"], /^TypeError: .*closed/);
  assert.equal(outcome["kept bytes[100]"], "value undefined", "a detached view reads nothing");
  assert.equal(outcome["kept bytes.length"], "value 0");
  assert.match(outcome["kept bytes.fill"], /^TypeError: .*detached/);
  assert.match(outcome["kept words Atomics.load"], /^TypeError: .*detached/);
  assert.equal(outcome["kept words[3] = 1"], "value undefined");
  assert.match(outcome["rxBurst"], /^TypeError: .*closed/);
});

for (const hugepages of [false, true]) {
  Deno.test(`shared memory (${hugepages ? "hugepages" : "4 KB pages"}) is sealed against shrinking`, () => {
    let mem: SharedMemory;
    try {
      mem = SharedMemory.create(4 << 20, { hugepages, notice: () => {} });
    } catch (e) {
      if (hugepages) return; // no hugepages reserved: the 4 KB case still runs
      throw e;
    }
    try {
      assert.equal(getSeals(mem.fd) & F_SEAL_SHRINK, F_SEAL_SHRINK, "F_SEAL_SHRINK is set");
      // What a hostile backend holding the fd would do; a hugetlb file only shrinks by huge pages.
      assert.throws(() => ftruncate(mem.fd, hugepages ? 2 << 20 : 4096), /EPERM/);
      mem.bytes[mem.size - 1] = 1; // the last page is still there
      assert.equal(mem.bytes[mem.size - 1], 1);
    } finally {
      mem.close();
    }
  });
}

Deno.test("buffer pool refuses out-of-range, double free and double submit, changing nothing", () => {
  using mem = SharedMemory.create(1 << 20, { hugepages: false });
  const pool = new BufferPool(mem, 64, 2048);
  const bufs = new Uint32Array(8);
  assert.equal(pool.alloc(bufs, 0, 4), 4);
  assert.equal(pool.available, 60);

  assert.throws(() => pool.free(Uint32Array.of(bufs[0], 64), 0, 2), (e: Error) => {
    assert.ok(e instanceof BufferError);
    assert.match(e.message, /buffer 64 is out of range \(the pool has 64\)/);
    return true;
  });
  assert.equal(pool.available, 60, "a refused free frees none");
  pool.free(bufs, 0, 1);
  assert.throws(() => pool.free(bufs, 0, 1), /buffer \d+ is already free \(freed twice/);
  assert.throws(() => pool.freeOne(bufs[0]), /already free/);
  assert.equal(pool.available, 61);

  pool.submit(bufs, 0); // nothing
  const two = bufs.subarray(1, 3);
  pool.submit(two, 2); // now the port's
  assert.throws(() => pool.submit(two, 2), /txBurst: buffer \d+ belongs to the port/);
  assert.throws(() => pool.free(two, 0, 2), /belongs to the port/);
  pool.reclaim(two, 0, 2);
  assert.equal(pool.available, 63);
  pool.free(bufs, 3, 1);
  assert.equal(pool.available, 64, "the pool is full again");
});
