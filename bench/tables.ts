/**
 * The bench's tables: a plain-text one for the terminal and a Markdown one (`--markdown`) that
 * is the README's Performance table, produced from a run's results (or from its `--json` file).
 *
 * ```
 *   PairResult[] ──► textTable  (every row, medians, min..max, steal)
 *                └─► markdownTable (README: grouped by job, "n/a: needs …" kept visible)
 * ```
 *
 * @module
 */

import { JOBS } from "./matrix.ts";
import type { PairResult } from "./rounds.ts";
import type { Spread } from "./stats.ts";

function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "-";
}

function range(s: Spread, digits = 2): string {
  return s.n === 0
    ? "-"
    : `${fmt(s.median, digits)} (${fmt(s.min, digits)}..${fmt(s.max, digits)})`;
}

/** The swept value or the frame size, for the row label. */
function variant(r: PairResult): string {
  const rate = r.id.match(/@([\d.]+)Mpps$/); // a latency row's target rate (latencyPair)
  if (rate !== null) return `${r.size} B at ${rate[1]} Mpps`;
  return r.axis === undefined || r.axis.name === "size"
    ? `${r.size} B`
    : `${r.axis.name} ${r.axis.value}`;
}

/** What a side shows when it did not run. */
function na(why: string | undefined): string {
  return `n/a: ${why}`;
}

/** One line per row: Mpps median (min..max) of each side, the per-round ratio, Gbps. */
export function textTable(results: PairResult[]): string {
  const head = ["row", "TypeScript Mpps", "DPDK C Mpps", "TS/C per round", "Gbps TS / C"];
  const rows = results.map((r) => {
    const ts = r.tsNa !== undefined ? na(r.tsNa) : range(r.ts);
    const c = r.cNa !== undefined ? na(r.cNa) : range(r.c);
    const latency = r.extra === undefined ? "" : "  " +
      Object.entries(r.extra).map(([k, v]) => `${k} ${fmt(v)}`).join("  ");
    return [
      r.id,
      ts,
      c,
      r.ratio.n === 0 ? "-" : range(r.ratio),
      `${fmt(r.gbps.ts)} / ${fmt(r.gbps.c)}${latency}`,
    ];
  });
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

/**
 * The README table: one group per job, the job's TypeScript program and C twin named on its first
 * line, then a line per ring and size with medians and the per-round ratio's median (min..max).
 */
export function markdownTable(results: PairResult[], caption: string): string {
  const out = [
    caption,
    "",
    "| job | ring | frame | this stack (Mpps) | DPDK C (Mpps) | TS/C median (min..max) |",
    "| --- | ---- | ----- | ----------------- | ------------- | ---------------------- |",
  ];
  let lastJob = "";
  for (const r of results) {
    const job = JOBS[r.job];
    const first = r.job !== lastJob;
    lastJob = r.job;
    const label = first ? `${job.title}: ${job.ts} vs ${job.c}` : "";
    const ts = r.tsNa !== undefined
      ? na(r.tsNa)
      : r.extra !== undefined
      ? Object.entries(r.extra).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")
      : fmt(r.ts.median);
    const c = r.c.n === 0 ? "-" : fmt(r.c.median);
    out.push(
      `| ${label} | ${r.ring} | ${variant(r)} | ${ts} | ${c} | ${
        r.ratio.n === 0 ? "-" : range(r.ratio)
      } |`,
    );
  }
  return out.join("\n");
}
