/**
 * Round-trip latency through testpmd `io` (issue 12): pktgen's latency mode at 0.1, 1 and 5 Mpps,
 * packed and split, 64-byte frames, in rounds (the order reversed every other round), and the
 * median of each row's p50 / p99 / p99.9 over the rounds. Beside each run, what kept the two busy
 * pollers off their cores: the time each spent runnable but waiting for a CPU (the run-queue wait
 * of `/proc/PID/task/*\/schedstat`, summed over the process's threads), per second of run.
 *
 * ```
 *   pktgen --latency --rate R (core 0) ──► testpmd net_vhost io (core 1) ──► pktgen: probe RTT
 * ```
 *
 * Run: `deno run -A bench/latency.ts [--rounds 3] [--duration 5] [--rates 0.1,1,5]
 * [--rings packed,split] [--testpmd=--burst=1] [--pktgen="--burst 1"] [--markdown]`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Testpmd } from "../tests/testpmd.ts";
import { cpus, example, report, sleep } from "./peers.ts";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    rates: { type: "string", default: "0.1,1,5" },
    rings: { type: "string", default: "packed,split" },
    testpmd: { type: "string", default: "" },
    pktgen: { type: "string", default: "" },
    markdown: { type: "boolean", default: false },
  },
}).values;

const rounds = Number(args.rounds), seconds = Number(args.duration);
/**
 * Probes of pktgen's first second are counted, not measured (`--latency-warmup`): start-up
 * (connect, JIT tier-up, first page faults) is not the round trip. The run-queue waits below
 * count from the same second on.
 */
const WARMUP_MS = 1000;
const rates = args.rates.split(",").map(Number);
const rings = args.rings.split(",");
const words = (s: string) => s.split(" ").filter((w) => w !== "");

/** Run-queue wait (ns) summed over the threads of `pid`; 0 once it is gone. */
function runQueueWaitNs(pid: number): number {
  let sum = 0;
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const f = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ");
      sum += Number(f[1]);
    }
  } catch { /* exited */ }
  return sum;
}

/** Steal time of the whole machine (ns), from /proc/stat (USER_HZ = 100 ticks a second). */
function stealNs(): number {
  const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/);
  return Number(cpu[8]) * 1e7;
}

/** Per-thread counters: name, CPU time (ns), run-queue wait (ns), involuntary switches. */
interface ThreadSample {
  name: string;
  runNs: number;
  waitNs: number;
  involuntary: number;
}

/** The counters of each thread of `pid`, by thread id; empty once it is gone. */
function threads(pid: number): Map<string, ThreadSample> {
  const out = new Map<string, ThreadSample>();
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const dir = `/proc/${pid}/task/${t.name}`;
      const f = Deno.readTextFileSync(`${dir}/schedstat`).split(" ");
      const status = Deno.readTextFileSync(`${dir}/status`);
      out.set(t.name, {
        name: Deno.readTextFileSync(`${dir}/comm`).trim(),
        runNs: Number(f[0]),
        waitNs: Number(f[1]),
        involuntary: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0),
      });
    }
  } catch { /* exited */ }
  return out;
}

/**
 * What the polling thread (the busiest) and the process's other threads did between two samples,
 * per second: the poller's involuntary context switches and run-queue wait, the CPU time of the
 * other threads (on the same CPU: they compete with the poller).
 */
function threadDelta(a: Map<string, ThreadSample>, b: Map<string, ThreadSample>, s: number) {
  let poller = "", pollerRun = -1, othersRunNs = 0;
  for (const [tid, t] of b) {
    const run = t.runNs - (a.get(tid)?.runNs ?? 0);
    if (run > pollerRun) {
      if (pollerRun >= 0) othersRunNs += pollerRun;
      pollerRun = run;
      poller = tid;
    } else othersRunNs += run;
  }
  const p1 = b.get(poller), p0 = a.get(poller);
  return {
    poller: p1?.name ?? "",
    involuntaryPerS: p1 && p0 ? (p1.involuntary - p0.involuntary) / s : 0,
    pollerWaitMsPerS: p1 && p0 ? (p1.waitNs - p0.waitNs) / 1e6 / s : 0,
    othersMsPerS: othersRunNs / 1e6 / s,
  };
}

/** The pid of the testpmd started with `fileprefix` (its command line names it). */
function testpmdPid(fileprefix: string): number {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (cmd.includes("dpdk-testpmd") && cmd.includes(fileprefix)) return Number(e.name);
    } catch { /* gone */ }
  }
  throw new Error(`no testpmd process with --file-prefix ${fileprefix}`);
}

interface Run {
  ring: string;
  rate: number;
  reached: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  probes: number;
  lost: number;
  /** ms of run-queue wait per second of run: testpmd, pktgen. */
  waitTestpmd: number;
  waitPktgen: number;
  /** Machine steal time, ms per second (summed over the CPUs). */
  steal: number;
  /** Each side's polling thread: involuntary switches/s, and the others' CPU ms/s. */
  threadsTestpmd: ReturnType<typeof threadDelta>;
  threadsPktgen: ReturnType<typeof threadDelta>;
}

async function once(ring: string, rate: number): Promise<Run> {
  const dir = await Deno.makeTempDir();
  const sock = `${dir}/vhost.sock`;
  try {
    await using tp = await Testpmd.start({
      vdev: `net_vhost0,iface=${sock},queues=1`,
      forwardMode: "io",
      cpu: cpus.device,
      extraArgs: words(args.testpmd),
    });
    await tp.startForwarding();
    const tpPid = testpmdPid(tp.fileprefix);
    const child = example("pktgen", cpus.driver, [
      ...["--path", sock, "--duration", String(seconds), "--json", "--quiet"],
      ...["--latency", "--rate", `${rate}M`, "--latency-warmup", String(WARMUP_MS)],
      ...(ring === "split" ? ["--split"] : []),
      ...words(args.pktgen),
    ]).spawn();
    // Start-up is not the run: the waits count from the end of the warm-up on.
    await sleep(WARMUP_MS);
    const t0 = performance.now();
    const w0 = [runQueueWaitNs(tpPid), runQueueWaitNs(child.pid)];
    const th0 = [threads(tpPid), threads(child.pid)], steal0 = stealNs();
    await sleep((seconds - 1.2) * 1000);
    const span = (performance.now() - t0) / 1000;
    const w1 = [runQueueWaitNs(tpPid), runQueueWaitNs(child.pid)];
    const th1 = [threads(tpPid), threads(child.pid)], steal1 = stealNs();
    const r = report((await child.output()).stdout) as unknown as Record<string, never>;
    const l = r.latency_us as Record<string, number>;
    return {
      ring,
      rate,
      reached: r.mpps,
      p50: l.p50,
      p99: l.p99,
      p999: l["p99.9"],
      max: l.max,
      probes: r.probes_sent,
      lost: r.lost,
      waitTestpmd: (w1[0] - w0[0]) / 1e6 / span,
      waitPktgen: (w1[1] - w0[1]) / 1e6 / span,
      steal: (steal1 - steal0) / 1e6 / span,
      threadsTestpmd: threadDelta(th0[0], th1[0], span),
      threadsPktgen: threadDelta(th0[1], th1[1], span),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const order = rings.flatMap((ring) => rates.map((rate) => ({ ring, rate })));
const runs: Run[] = [];
for (let k = 0; k < rounds; k++) {
  for (const { ring, rate } of k % 2 === 0 ? order : [...order].reverse()) {
    const r = await once(ring, rate);
    runs.push(r);
    console.error(
      `round ${k + 1} ${ring} ${rate} Mpps: reached ${r.reached}, p50 ${r.p50} p99 ${r.p99} ` +
        `p99.9 ${r.p999} max ${r.max} µs, probes ${r.probes} lost ${r.lost}, run-queue wait ` +
        `testpmd ${r.waitTestpmd.toFixed(1)} ms/s, pktgen ${r.waitPktgen.toFixed(1)} ms/s, steal ` +
        `${r.steal.toFixed(1)} ms/s; pollers' involuntary switches/s testpmd ` +
        `${r.threadsTestpmd.involuntaryPerS.toFixed(0)} (${r.threadsTestpmd.poller}), pktgen ` +
        `${r.threadsPktgen.involuntaryPerS.toFixed(0)} (${r.threadsPktgen.poller}); other ` +
        `threads' CPU testpmd ${r.threadsTestpmd.othersMsPerS.toFixed(1)}, pktgen ` +
        `${r.threadsPktgen.othersMsPerS.toFixed(1)} ms/s`,
    );
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const lines = [
  `| ring | target | reached (Mpps) | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | ` +
  `lost / probes | run-queue wait testpmd / pktgen (ms/s) |`,
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];
for (const { ring, rate } of order) {
  const rs = runs.filter((r) => r.ring === ring && r.rate === rate);
  const m = (key: keyof Run) => median(rs.map((r) => r[key] as number));
  lines.push(
    `| ${ring} | ${rate} Mpps | ${m("reached").toFixed(2)} | ${f(m("p50"))} | ${f(m("p99"))} | ` +
      `${f(m("p999"))} | ${f(m("max"))} | ${rs.reduce((a, r) => a + r.lost, 0)} / ` +
      `${rs.reduce((a, r) => a + r.probes, 0)} | ${m("waitTestpmd").toFixed(1)} / ` +
      `${m("waitPktgen").toFixed(1)} |`,
  );
}
console.log(
  args.markdown
    ? lines.join("\n")
    : JSON.stringify({ runs, options: args, load: Deno.loadavg() }, null, 1),
);
