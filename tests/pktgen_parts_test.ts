/**
 * Unit tests of pktgen's parts, on simulated clocks (no timing): rate parsing, the CBR and
 * Poisson pacers, size tables and IMIX proportions, sequence tracking, the histogram CSV.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as hdr from "hdr-histogram-js";
import { DEFAULT_IMIX, sizeTable } from "../examples/frame_sizes.ts";
import { histogramCsv, SequenceTracker } from "../examples/latency.ts";
import { L1_OVERHEAD, LoopClock, Pacer, parseBitRate, parseRate } from "../examples/rate.ts";

Deno.test("parseRate: packets/s, L1 bits/s and percent of the link", () => {
  assert.equal(parseRate("2000000", 10e9, 64), 2e6);
  assert.equal(parseRate("2M", 10e9, 64), 2e6);
  assert.equal(parseRate("100kpps", 10e9, 64), 1e5);
  assert.equal(parseRate("max", 10e9, 64), Infinity);
  // 5 Gbit/s of 64-byte frames on the wire: (64 + 24) * 8 bits each.
  assert.equal(parseRate("5Gbps", 10e9, 64), 5e9 / ((64 + L1_OVERHEAD) * 8));
  assert.equal(Math.round(parseRate("100%", 10e9, 60)), 14_880_952); // 10GbE line rate, 64 B
  assert.equal(Math.round(parseRate("50%", parseBitRate("25G"), 1514)), 1_015_930);
  assert.throws(() => parseRate("fast", 10e9, 64), TypeError);
  assert.throws(() => parseBitRate("10Q"), TypeError);
});

Deno.test("CBR pacer: the k-th frame is due at k/rate, a late sender catches up", () => {
  const clock = new LoopClock();
  const p = new Pacer(1_000_000, "cbr", 0, clock); // 1000 frames per ms
  let sent = 0;
  for (let k = 0; k <= 1_000_000; k++) { // 10 s in 10 µs steps, 32 frames at most per step
    clock.ms[0] = k / 100;
    const n = p.due(32);
    p.sent(n);
    sent += n;
  }
  assert.equal(sent, 10_000_000);
  const late = new Pacer(1000, "cbr", 0, clock);
  clock.ms[0] = 50;
  assert.equal(late.due(1e9), 50); // 50 ms without a look: 50 frames due at once
});

Deno.test("Poisson pacer: the mean rate holds, the gaps vary", () => {
  const clock = new LoopClock();
  const p = new Pacer(100_000, "poisson", 0, clock);
  let sent = 0, busySteps = 0;
  for (let k = 0; k <= 2_000_000; k++) {
    clock.ms[0] = k / 200;
    const n = p.due(32);
    p.sent(n);
    sent += n;
    if (n > 1) busySteps++;
  }
  assert.ok(Math.abs(sent / 1_000_000 - 1) < 0.01, `sent ${sent} of 1000000`);
  assert.ok(busySteps > 0, "exponential gaps put several frames in some steps");
});

Deno.test("size tables: fixed, range, random range and IMIX in exact proportions", () => {
  const fixed = sizeTable("64", "inc", undefined, 60, 2036);
  assert.equal(fixed.mean, 64);
  const range = sizeTable("64-127", "inc", undefined, 60, 2036);
  assert.deepEqual([range.min, range.max, range.sizes[0], range.sizes[63], range.sizes[64]], [
    64,
    127,
    64,
    127,
    64,
  ]);
  const random = sizeTable("100-200", "random", undefined, 60, 2036);
  assert.ok(random.min >= 100 && random.max <= 200 && random.min < random.max);
  const imix = sizeTable("64", "inc", "default", 60, 2036);
  assert.equal(DEFAULT_IMIX, "60:7,590:4,1514:1");
  const n = (s: number) => imix.sizes.filter((x) => x === s).length;
  assert.deepEqual([n(60), n(590), n(1514)].map((c) => Math.round(c / imix.sizes.length * 12)), [
    7,
    4,
    1,
  ]);
  assert.ok(Math.abs(imix.mean - (7 * 60 + 4 * 590 + 1514) / 12) < 1);
  assert.throws(() => sizeTable("59", "inc", undefined, 60, 2036), /60\.\.2036/);
  assert.throws(() => sizeTable("64", "inc", "60:x", 60, 2036), /SIZE:WEIGHT/);
});

Deno.test("SequenceTracker: lost, reordered and duplicated numbers", () => {
  const t = new SequenceTracker(16);
  for (const seq of [0, 1, 3, 2, 2, 5, 4, 4, 6]) t.record(seq);
  assert.equal(t.received, 7); // 0..6
  assert.equal(t.reordered, 2); // 2 after 3, 4 after 5
  assert.equal(t.duplicated, 2);
  assert.equal(t.highest, 6);
});

Deno.test("histogram CSV: the bucket counts add up to the values recorded", () => {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60e9 });
  for (let i = 0; i < 12345; i++) h.recordValue(1000 + ((i * 7919) % 5_000_000));
  const rows = histogramCsv(h).trim().split("\n");
  assert.equal(rows[0], "latency_us,count,cumulative,percentile");
  const counts = rows.slice(1).map((r) => Number(r.split(",")[1]));
  assert.equal(counts.reduce((a, c) => a + c, 0), 12345);
  assert.equal(rows.at(-1)!.split(",")[3], "100.0000");
});
