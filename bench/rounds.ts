/**
 * Runs rows of pairs in rounds and summarises them. The loop is round-major: round 1 of every
 * row, then round 2 of every row, so a noisy minute on the machine lands in one round of many
 * rows rather than in every round of one row. Within a round a row's two sides run in ABBA order
 * (TS, C, C, TS) by default; each round gives one ratio from its own runs.
 *
 * ```
 *   for round r:  for row p:  order(r) ──► runs ──► samples (Mpps, Gbps, steal, load)
 *   rows ──► ts Spread, c Spread, ratio Spread (per-round ratios) ──► PairResult
 * ```
 *
 * @module
 */

import { cpuShares, cpuSnapshot, maxSteal, runnableSampler } from "./cpu_noise.ts";
import { missing } from "./features.ts";
import type { Pair } from "./matrix.ts";
import type { RunConfig } from "./peers.ts";
import { roundRatio, runOrder, type Spread, spread } from "./stats.ts";

/** One run of one side. */
export interface RunSample {
  /** The row ({@linkcode Pair.id}). */
  id: string;
  /** Round number from 0. */
  round: number;
  /** Which side ran. */
  side: "ts" | "c";
  /** Receiver's packets over the window, in millions per second (NaN when the run failed). */
  mpps: number;
  /** The same in Gbit/s of frames (without FCS). */
  gbps: number;
  /** Packets the receiver counted. */
  packets: number;
  /** Seconds of the window. */
  seconds: number;
  /** Largest steal share of a vCPU during the run (0..1). */
  steal: number;
  /** One-minute load average when the run started. */
  load: number;
  /** Mean runnable threads during the run (ours count 3; see {@linkcode NOISY_RUNNABLE}). */
  runnable: number;
  /** Other figures the run reported (latency rows). */
  extra?: Record<string, number>;
  /** Why the run failed. */
  error?: string;
}

/** A row's summary over all rounds. */
export interface PairResult {
  /** {@linkcode Pair.id}. */
  id: string;
  /** {@linkcode Pair.job}. */
  job: Pair["job"];
  /** "packed" or "split". */
  ring: string;
  /** Frame bytes. */
  size: number;
  /** The swept parameter, in a sweep. */
  axis?: Pair["axis"];
  /** Why the TypeScript side did not run ("needs …"), when it did not. */
  tsNa?: string;
  /** Why the C side did not run, when it did not. */
  cNa?: string;
  /** TypeScript Mpps over all its runs. */
  ts: Spread;
  /** C Mpps over all its runs. */
  c: Spread;
  /** TS/C per round. */
  ratio: Spread;
  /** Gbit/s medians of each side. */
  gbps: { ts: number; c: number };
  /** Medians of the extra figures of the TypeScript runs (latency rows). */
  extra?: Record<string, number>;
}

/** How the rounds run. */
export interface RoundOptions {
  /** Rounds (each gives one ratio per row). */
  rounds: number;
  /** Seconds of traffic per run. */
  seconds: number;
  /** `abba` (default) or `ab` (see {@linkcode runOrder}). */
  order: "abba" | "ab";
  /** Directory for the runs' sockets. */
  dir: string;
  /** testpmd `--lcores` for the measured side, for placement experiments. */
  lcores?: string;
  /** Called after every run (progress lines). */
  onSample?: (s: RunSample, p: Pair) => void;
  /** Called once before the first run with the number of runs planned. */
  onPlan?: (runs: number) => void;
}

/** Runs every row for `opts.rounds` rounds; returns all samples and a summary per row. */
export async function runRounds(
  pairs: Pair[],
  opts: RoundOptions,
): Promise<{ samples: RunSample[]; results: PairResult[] }> {
  const tsNa = new Map<string, string>();
  for (const p of pairs) {
    const why = p.na ?? (await missing(p.needs));
    if (why !== null) tsNa.set(p.id, why.startsWith("needs") ? why : `needs ${why}`);
  }
  const runnable = pairs.filter((p) => !tsNa.has(p.id) || (p.cAlone && p.c !== null));
  const perRound = runnable.reduce(
    (sum, p) =>
      sum +
      runOrder(opts.order, 0).filter((side) => side === "ts" ? !tsNa.has(p.id) : p.c !== null)
        .length,
    0,
  );
  opts.onPlan?.(perRound * opts.rounds);
  const samples: RunSample[] = [];
  let n = 0;
  for (let round = 0; round < opts.rounds; round++) {
    for (const p of runnable) {
      for (const side of runOrder(opts.order, round)) {
        if (side === "ts" && tsNa.has(p.id)) continue;
        if (side === "c" && p.c === null) continue;
        const cfg: RunConfig = {
          ...p.cfg,
          sock: `${opts.dir}/run${n++}.sock`,
          seconds: opts.seconds,
          lcores: opts.lcores,
        };
        const s = await runOnce(p, side, round, cfg);
        samples.push(s);
        opts.onSample?.(s, p);
      }
    }
  }
  return { samples, results: pairs.map((p) => summarise(p, samples, tsNa.get(p.id))) };
}

async function runOnce(p: Pair, side: "ts" | "c", round: number, cfg: RunConfig) {
  const load = loadAverage();
  const before = cpuSnapshot();
  const sampler = runnableSampler();
  const base = { id: p.id, round, side, load };
  try {
    const r = await (side === "ts" ? p.ts : p.c!)(cfg);
    const runnable = sampler.stop();
    const steal = maxSteal(cpuShares(before, cpuSnapshot()));
    const mpps = r.packets / r.seconds / 1e6;
    const gbps = (r.packets * cfg.size * 8) / r.seconds / 1e9;
    const extra = r.extra;
    return { ...base, mpps, gbps, packets: r.packets, seconds: r.seconds, steal, runnable, extra };
  } catch (e) {
    const runnable = sampler.stop();
    const steal = maxSteal(cpuShares(before, cpuSnapshot()));
    const error = errorLine(e);
    return { ...base, mpps: NaN, gbps: NaN, packets: 0, seconds: 0, steal, runnable, error };
  } finally {
    await Deno.remove(cfg.sock).catch(() => {});
    await Deno.remove(`${cfg.sock}.b`).catch(() => {});
  }
}

function summarise(p: Pair, all: RunSample[], tsNa: string | undefined): PairResult {
  const mine = all.filter((s) => s.id === p.id);
  const side = (w: "ts" | "c") => mine.filter((s) => s.side === w && !Number.isNaN(s.mpps));
  const ts = side("ts"), c = side("c");
  const rounds = new Set(mine.map((s) => s.round));
  const ratios = [...rounds].map((r) =>
    roundRatio(
      ts.filter((s) => s.round === r).map((s) => s.mpps),
      c.filter((s) => s.round === r).map((s) => s.mpps),
    )
  );
  let extra: Record<string, number> | undefined;
  for (const key of new Set(ts.flatMap((s) => Object.keys(s.extra ?? {})))) {
    extra ??= {};
    extra[key] = spread(ts.map((s) => s.extra?.[key] ?? NaN)).median;
  }
  return {
    id: p.id,
    job: p.job,
    ring: p.cfg.packed ? "packed" : "split",
    size: p.cfg.size,
    axis: p.axis,
    tsNa,
    cNa: p.c === null ? "no C twin" : tsNa !== undefined && !p.cAlone ? tsNa : undefined,
    ts: spread(ts.map((s) => s.mpps)),
    c: spread(c.map((s) => s.mpps)),
    ratio: spread(ratios),
    gbps: { ts: spread(ts.map((s) => s.gbps)).median, c: spread(c.map((s) => s.gbps)).median },
    extra,
  };
}

/**
 * The first line of what a failed run threw. For a SuppressedError (a disposal that failed while
 * an `await using` block was already throwing), that is the original error, which says what failed.
 *
 * @example
 * ```ts
 * console.log(errorLine(new Error("testpmd exited\nEAL: ..."))); // testpmd exited
 * ```
 */
export function errorLine(e: unknown): string {
  const first = e instanceof SuppressedError ? e.suppressed : e;
  return (first instanceof Error ? first.message : String(first)).split("\n")[0];
}

/** One-minute load average (NaN where unreadable). */
function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/**
 * Mean runnable threads above which a run shared its CPUs with other work: a run's two pollers
 * and the sampler itself (which is running while it reads) count 3; forwarding runs three pollers.
 */
export const NOISY_RUNNABLE = 3.5;

/**
 * Whether a run shared the machine: other threads runnable beside its two pollers, or a vCPU
 * losing more than 2 % of its time to the hypervisor.
 */
export function noisy(s: RunSample): boolean {
  return s.runnable > NOISY_RUNNABLE || s.steal > 0.02;
}

/** "N of M runs were noisy", for captions; empty when none were. */
export function noiseNote(samples: RunSample[]): string {
  const n = samples.filter(noisy).length;
  if (n === 0) return "";
  return ` ${n} of ${samples.length} runs shared the CPUs with other work (mean runnable threads ` +
    `up to ${Math.max(...samples.map((s) => s.runnable)).toFixed(1)}, steal up to ` +
    `${(100 * Math.max(...samples.map((s) => s.steal))).toFixed(0)} %): compare ratios, not rates.`;
}
