/**
 * The seeded fuzzer (tests/fuzz.ts) as part of the test run: 100,000 cases in all, each ending in
 * a clean error or normal service; a failure names the seed that replays it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { type FuzzKind, runFuzz } from "./fuzz.ts";

const CASES: Record<FuzzKind, number> = { message: 30_000, device: 35_000, driver: 35_000 };

for (const [kind, cases] of Object.entries(CASES) as [FuzzKind, number][]) {
  Deno.test(`fuzz: ${cases} seeded ${kind} cases end cleanly`, () => {
    const before = openFds();
    const { ms, started } = runFuzz(kind, 0x5eed, cases);
    if (kind === "message") assert.ok(started > 0, "some cases reached running rings");
    console.log(
      `  ${kind}: ${cases} cases in ${(ms / 1000).toFixed(1)} s (${
        (cases / ms * 1000).toFixed(0)
      }/s)`,
    );
    assert.equal(openFds(), before, "no fd leaked");
  });
}
