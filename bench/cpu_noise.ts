/**
 * What the machine did besides our run: per-CPU time from `/proc/stat` sampled before and after
 * each run, so every sample carries the share of time the hypervisor stole from each vCPU and the
 * share other processes took, and the mean number of runnable threads during the run. A run whose
 * steal or foreign load is high is not comparable to one whose isn't; the bench prints both next
 * to each figure.
 *
 * ```
 *   /proc/stat "cpuN user nice system idle iowait irq softirq steal" ── before ─┐
 *                                                                  ── after ───┴─► steal %, busy %
 * ```
 *
 * @module
 */

/** Cumulative jiffies of one CPU, as `/proc/stat` counts them. */
interface CpuTimes {
  busy: number;
  idle: number;
  steal: number;
}

/** A snapshot of every CPU's counters. */
export type CpuSnapshot = Map<string, CpuTimes>;

/** Share of wall time, per CPU, over an interval (0..1). */
export interface CpuShare {
  /** Time the hypervisor ran something else on this vCPU's host CPU. */
  steal: number;
  /** Time this CPU ran anything (ours or others'). */
  busy: number;
}

/** Reads `/proc/stat`; an empty map where it does not exist. */
export function cpuSnapshot(): CpuSnapshot {
  const out: CpuSnapshot = new Map();
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/stat");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    const f = line.split(/\s+/);
    if (!/^cpu\d+$/.test(f[0])) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f.slice(1, 9).map(Number);
    out.set(f[0], { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal });
  }
  return out;
}

/** Per-CPU shares between two snapshots. */
export function cpuShares(before: CpuSnapshot, after: CpuSnapshot): Record<string, CpuShare> {
  const out: Record<string, CpuShare> = {};
  for (const [cpu, a] of after) {
    const b = before.get(cpu);
    if (b === undefined) continue;
    const total = (a.busy - b.busy) + (a.idle - b.idle) + (a.steal - b.steal);
    if (total <= 0) continue;
    out[cpu] = {
      steal: round3((a.steal - b.steal) / total),
      busy: round3((a.busy - b.busy) / total),
    };
  }
  return out;
}

/** Largest steal share of any CPU in `shares` (0 when none). */
export function maxSteal(shares: Record<string, CpuShare>): number {
  return Math.max(0, ...Object.values(shares).map((s) => s.steal));
}

/**
 * Samples the kernel's count of runnable threads (`procs_running` in `/proc/stat`) every
 * `everyMs` until stopped; `stop()` returns the mean (NaN when unreadable). A run's own two
 * busy-pollers count 2 and the sampling thread, running while it reads, 1: anything above 3 is
 * other work competing for the two CPUs.
 */
export function runnableSampler(everyMs = 100): { stop(): number } {
  const seen: number[] = [];
  const sample = () => {
    try {
      const m = /procs_running (\d+)/.exec(Deno.readTextFileSync("/proc/stat"));
      if (m !== null) seen.push(Number(m[1]));
    } catch { /* no /proc */ }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return seen.length === 0 ? NaN : round3(seen.reduce((a, b) => a + b, 0) / seen.length);
    },
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
