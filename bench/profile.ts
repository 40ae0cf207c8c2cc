/**
 * Where the time goes in matrix rows: each side of each row (TypeScript, then C) runs once while
 * `perf record -a -e cpu-clock` samples both CPUs, and the busiest symbols are printed per CPU.
 * The driver side runs on one CPU and the device side on the other (`peers.ts` `cpus`), so each
 * CPU's column is one program and its peer's is the other; idle (`pv_native_safe_halt`, the
 * guest's halt) shows a side that waits.
 *
 * ```
 *   row p, side s:  start runner ── delay ──► perf record -a (window) ──► perf report
 *                                             by CPU, comm, symbol (self time)
 * ```
 *
 * JIT frames get names through `DENO_V8_FLAGS=--perf-basic-prof` (set for the examples this
 * starts; V8 writes `/tmp/perf-PID.map`, removed afterwards, and its log into a temporary
 * directory). The window starts `--delay`
 * seconds into a run of `--delay + --window + 2` seconds, after both programs are up and warm.
 * This guest has no hardware counters, so samples are of time, not of instructions or misses.
 *
 * Run (as root, with `linux-perf`):
 * `deno run -A bench/profile.ts [--only device-tx/packed/1518,...] [--window 3] [--delay 3]
 * [--top 8] [--markdown]`. A side that fails (a peer gone, a program that exits) is reported on
 * its row, and the tool exits 1; a bad option exits 2.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { testpmdPath } from "../tests/peers.ts";
import { intOption, parseCli } from "../examples/cli.ts";
import { JOBS, matrix, type Pair, selectRows } from "./matrix.ts";
import { cpus, sleep } from "./peers.ts";
import { errorLine } from "./rounds.ts";

const USAGE = "usage: profile.ts [--only JOB|ROW,...] [--sizes 64,1518] [--rings packed,split]\n" +
  "  [--window S] [--delay S] [--top N] [--markdown]";
const args = parseCli(USAGE, () =>
  parseArgs({
    options: {
      only: { type: "string" },
      sizes: { type: "string", default: "64,1518" },
      rings: { type: "string", default: "packed,split" },
      window: { type: "string" },
      delay: { type: "string" },
      top: { type: "string" },
      markdown: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  }).values);
const window = intOption("window", args.window, 3);
const delay = intOption("delay", args.delay, 3);
const top = intOption("top", args.top, 8);

/** One symbol's share of one CPU's samples. */
interface Hot {
  cpu: number;
  comm: string;
  symbol: string;
  percent: number;
}

/** A side's profile: its rate and the busiest symbols on each CPU. */
interface SideProfile {
  mpps: number;
  hot: Hot[];
  error?: string;
}

/** `JS:*pop file:///…/lib/virtio/packed_ring.ts:676:6` → `pop (packed_ring.ts)`. */
function shortSymbol(sym: string): string {
  sym = sym.replace(/^\[[.k]\] /, "");
  const m = /^(?:JS|LazyCompile|Function):[*~^+']*(\S*) (?:file:\/\/)?\S*\/([^/]+\.ts)/.exec(sym);
  return m === null ? sym : `${m[1] || "(anonymous)"} (${m[2]})`;
}

/** Parses `perf report -t '|' --sort cpu,comm,dso,sym` lines into per-CPU shares. */
function parseReport(text: string, top: number): Hot[] {
  const rows: Hot[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.includes("|")) continue;
    const [pct, cpu, comm, dso, ...sym] = line.split("|");
    let symbol = shortSymbol(sym.join("|").trim());
    // Stripped libraries (Debian's DPDK): the library and the offset are what is known.
    if (/^0x[0-9a-f]+$/.test(symbol)) symbol = `${dso.trim()}+${symbol.replace(/^0x0*/, "0x")}`;
    rows.push({
      cpu: Number(cpu),
      comm: comm.trim(),
      symbol,
      percent: parseFloat(pct),
    });
  }
  // Shares of each CPU's own samples (the report's are of both CPUs together).
  const total = new Map<number, number>();
  for (const r of rows) total.set(r.cpu, (total.get(r.cpu) ?? 0) + r.percent);
  const out: Hot[] = [];
  for (const cpu of [...total.keys()].sort()) {
    const mine = rows.filter((r) => r.cpu === cpu).sort((a, b) => b.percent - a.percent);
    for (const r of mine.slice(0, top)) {
      out.push({ ...r, percent: (100 * r.percent) / total.get(cpu)! });
    }
  }
  return out;
}

async function perfMaps(): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const e of Deno.readDir("/tmp")) {
    if (/^perf-\d+\.map$/.test(e.name)) out.add(e.name);
  }
  return out;
}

/** Runs one side of `p` with perf sampling its window. */
async function profileSide(p: Pair, side: "ts" | "c", dir: string): Promise<SideProfile> {
  const data = `${dir}/${p.id.replaceAll("/", "_")}-${side}.data`;
  const sock = `${dir}/${side}.sock`;
  const mapsBefore = await perfMaps();
  const cfg = { ...p.cfg, sock, seconds: delay + window + 2 };
  const run = (side === "ts" ? p.ts : p.c!)(cfg);
  // Handled from the start: a runner failing during the delay is reported below, not uncaught.
  run.catch(() => {});
  try {
    await sleep(delay * 1000);
    const rec = await new Deno.Command("perf", {
      args: [
        "record",
        "-a",
        "-e",
        "cpu-clock",
        "-F",
        "1999",
        "-o",
        data,
        "--",
        "sleep",
        `${window}`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!rec.success) throw new Error(`perf record: ${new TextDecoder().decode(rec.stderr)}`);
    const r = await run;
    const rep = await new Deno.Command("perf", {
      args: [
        "report",
        "-i",
        data,
        "--no-children",
        "--sort",
        "cpu,comm,dso,sym",
        "-g",
        "none",
        "--stdio",
        "-t",
        "|",
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
    return {
      mpps: r.packets / r.seconds / 1e6,
      hot: parseReport(new TextDecoder().decode(rep.stdout), top),
    };
  } catch (e) {
    await run.catch(() => {}); // both programs gone before the next side starts
    return {
      mpps: NaN,
      hot: [],
      error: errorLine(e),
    };
  } finally {
    for (const m of await perfMaps()) {
      if (!mapsBefore.has(m)) await Deno.remove(`/tmp/${m}`).catch(() => {});
    }
    await Deno.remove(data).catch(() => {});
    await Deno.remove(sock).catch(() => {});
    await Deno.remove(`${sock}.b`).catch(() => {});
  }
}

function cpuName(cpu: number): string {
  return cpu === cpus.driver ? "driver CPU" : cpu === cpus.device ? "device CPU" : `CPU ${cpu}`;
}

function print(p: Pair, side: "ts" | "c", prof: SideProfile): string {
  const head = `${p.id} ${side === "ts" ? "TypeScript" : "C"}: ` +
    (prof.error !== undefined ? `FAILED: ${prof.error}` : `${prof.mpps.toFixed(2)} Mpps`);
  const lines = [args.markdown ? `**${head}**\n` : head];
  if (args.markdown && prof.hot.length > 0) {
    lines.push("| CPU | % | program | symbol |", "|---|--:|---|---|");
  }
  for (const h of prof.hot) {
    lines.push(
      args.markdown
        ? `| ${cpuName(h.cpu)} | ${h.percent.toFixed(1)} | ${h.comm} | \`${h.symbol}\` |`
        : `  ${cpuName(h.cpu).padEnd(10)} ${h.percent.toFixed(1).padStart(5)} %  ${
          h.comm.padEnd(15)
        } ${h.symbol}`,
    );
  }
  return lines.join("\n") + "\n";
}

if (testpmdPath() === null) {
  console.error("dpdk-testpmd not found; install: sudo apt-get install dpdk-dev");
  Deno.exit(1);
}
const perf = await new Deno.Command("perf", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().catch(() => null);
if (perf === null || !perf.success) {
  console.error("perf not found; install: sudo apt-get install linux-perf");
  Deno.exit(1);
}
const rows = selectRows(
  matrix({
    queueSize: 256,
    sizes: args.sizes.split(",").map(Number),
    rings: args.rings.split(",") as ("packed" | "split")[],
    flows: 256,
  }),
  args.only,
).filter((p) => p.c !== null);
if (rows.length === 0) {
  console.error(
    `--only ${args.only}: no row with a C twin matches (jobs: ${
      Object.keys(JOBS).filter((j) => j !== "latency")
    })`,
  );
  Deno.exit(2);
}
const dir = await Deno.makeTempDir({ prefix: "profile-" });
// The examples this starts inherit it (this process's V8 was set up already); V8's own log
// files go to `dir`, not into the working directory.
Deno.env.set("DENO_V8_FLAGS", `--perf-basic-prof,--logfile=${dir}/v8.log`);
try {
  for (const p of rows) {
    for (const side of ["ts", "c"] as const) {
      const prof = await profileSide(p, side, dir);
      if (prof.error !== undefined) Deno.exitCode = 1; // reported in its row; the others still run
      console.log(print(p, side, prof));
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
