/**
 * The bench's arithmetic and output without running anything: per-round ratios (not a ratio of
 * medians), ABBA order, and the Markdown table and SVG charts made from a saved result.
 *
 * ```
 *   samples ──► spread / roundRatio ──► PairResult ──► markdownTable, ratioChart, sweepChart
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { roundRatio, runOrder, spread } from "../bench/stats.ts";
import { markdownTable, textTable } from "../bench/tables.ts";
import { ratioChart, sweepChart } from "../bench/svg.ts";
import { errorLine, type PairResult } from "../bench/rounds.ts";
import { matrix, selectRows } from "../bench/matrix.ts";

Deno.test("bench: spread is min, median (mean of the middle two when even), max; NaN ignored", () => {
  assert.deepEqual(spread([3, 1, 2]), { min: 1, median: 2, max: 3, n: 3 });
  assert.deepEqual(spread([4, 1, NaN, 2, 3]), { min: 1, median: 2.5, max: 4, n: 4 });
  assert.equal(spread([]).n, 0);
});

Deno.test("bench: ABBA runs both sides twice per round; ab alternates the first side", () => {
  assert.deepEqual(runOrder("abba", 0), ["ts", "c", "c", "ts"]);
  assert.deepEqual(runOrder("abba", 1), ["ts", "c", "c", "ts"]);
  assert.deepEqual(runOrder("ab", 0), ["ts", "c"]);
  assert.deepEqual(runOrder("ab", 1), ["c", "ts"]);
});

Deno.test("bench: the ratio is per round, so a fast round and a slow round both give 1", () => {
  // Round 1 on a quiet machine, round 2 on a busy one: both sides scale together.
  const rounds = [roundRatio([30, 30], [30, 30]), roundRatio([10, 10], [10, 10])];
  assert.deepEqual(spread(rounds), { min: 1, median: 1, max: 1, n: 2 });
  // A ratio of medians over mismatched rounds would not be 1.
  assert.notEqual(spread([30, 10, 10]).median / spread([30, 30, 10]).median, 1);
});

function result(id: string, ratio: number[], over: Partial<PairResult> = {}): PairResult {
  return {
    id,
    job: "driver-tx",
    ring: "packed",
    size: 64,
    ts: spread([10, 12]),
    c: spread([11, 11]),
    ratio: spread(ratio),
    gbps: { ts: 5.6, c: 5.6 },
    ...over,
  };
}

Deno.test("bench: Markdown and text tables carry medians, min..max and n/a reasons", () => {
  const results = [
    result("driver-tx/packed/64", [0.9, 1, 1.2]),
    result("driver-tx-flows/packed/64", [], {
      job: "driver-tx-flows",
      tsNa: "needs pktgen --flows",
      cNa: "needs pktgen --flows",
      ts: spread([]),
      c: spread([]),
    }),
  ];
  const md = markdownTable(results, "caption");
  assert.match(
    md,
    /\| driver TX: `pktgen.ts` vs .* \| packed \| 64 B \| 11.00 \| 11.00 \| 1.00 \(0.90..1.20\) \|/,
  );
  assert.match(md, /n\/a: needs pktgen --flows/);
  assert.match(textTable(results), /1.00 \(0.90..1.20\)/);
});

Deno.test("bench: the charts are well-formed SVG with a bar per row and n/a text", () => {
  const svg = ratioChart(
    [result("a", [0.8, 1.1, 1.3]), result("b", [], { tsNa: "needs x", ratio: spread([]) })],
    "title & <caption>",
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /title &amp; &lt;caption&gt;/);
  assert.match(svg, /n\/a: needs x/);
  assert.equal((svg.match(/<rect /g) ?? []).length, 2); // background + one bar
  for (const tag of ["svg", "text"]) {
    assert.equal(
      (svg.match(new RegExp(`<${tag}[ >]`, "g")) ?? []).length,
      (svg.match(new RegExp(`</${tag}>`, "g")) ?? []).length,
    );
  }
  const sweep = sweepChart(
    [64, 128].map((size) =>
      result(`driver-tx/packed/${size}/size`, [1], { axis: { name: "size", value: size } })
    ),
    "sweep",
  );
  assert.match(sweep, /<polyline /);
});

Deno.test("bench: --only picks jobs, exact row ids and id prefixes", () => {
  const all = matrix({ queueSize: 256, sizes: [64, 1518], rings: ["packed", "split"], flows: 256 });
  const ids = (only: string | undefined) => selectRows(all, only).map((p) => p.id);
  assert.equal(ids(undefined).length, all.length);
  assert.deepEqual(ids("device-tx/packed/1518"), ["device-tx/packed/1518"]);
  assert.deepEqual(ids("forward"), [
    "forward/packed/64",
    "forward/split/64",
    "forward/packed/1518",
    "forward/split/1518",
  ]);
  assert.deepEqual(ids("driver-rx/split,device-rx/packed/64"), [
    "driver-rx/split/64",
    "driver-rx/split/1518",
    "device-rx/packed/64",
  ]);
  assert.deepEqual(ids("driver-tx/packed/15"), []); // a prefix ends at a "/"
});

Deno.test("bench: a failed run's error line is the original error, also under a failed disposal", () => {
  assert.equal(errorLine(new Error("testpmd exited\nEAL: detail")), "testpmd exited");
  const original = new Error("device.ts exited with code 3\nstack");
  const suppressed = new SuppressedError(new Error("close: EBADF"), original, "disposal failed");
  assert.equal(errorLine(suppressed), "device.ts exited with code 3");
  assert.equal(errorLine("plain"), "plain");
});
