/**
 * The programs a benchmark run starts, one core each: dpdk-testpmd instances (C) through the
 * test harness, and the example programs (TypeScript) pinned with `taskset`. Every function here
 * runs one side of one measurement and returns exact counts and the time they were counted over.
 *
 * ```
 *   sender (CPU 0) ──vhost-user socket──► receiver (CPU 1)
 *   count: receiver's exact packets;  time: the sender's active window (see each function)
 * ```
 *
 * Windows of testpmd forwarding are taken between the midpoints of the `start` and `stop`
 * commands (each a round trip of a few ms over its stdin), so command latency cancels to first
 * order.
 *
 * @module
 */

import { type ForwardStats, Testpmd, type TestpmdOptions } from "../tests/testpmd.ts";

/**
 * CPUs the two sides run on: the driver side (virtio-user: pktgen, sink, testpmd
 * net_virtio_user) and the device side (vhost-user: device.ts, testpmd net_vhost). Settable for
 * placement experiments (`--cpus 1,0` swaps them).
 */
export const cpus = { driver: 0, device: 1 };

/** What every run takes. */
export interface RunConfig {
  /** vhost-user socket the two sides meet at (forwarding uses it and `${sock}.b`). */
  sock: string;
  /** Seconds each run moves traffic. */
  seconds: number;
  /** Frame bytes without FCS. */
  size: number;
  /** Packed (true) or split rings. */
  packed: boolean;
  /** Frames per burst on the measured side (undefined: each program's default, 32). */
  burst?: number;
  /** Descriptors per ring. */
  queueSize: number;
  /** Per-packet flows (pktgen `--flows N`, testpmd `--txonly-multi-flow`), 0 for one flow. */
  flows: number;
  /** `--lcores` override for the measured testpmd, for placement experiments. */
  lcores?: string;
}

/** One side's result: exact packets counted and the seconds they were counted over. */
export interface Counted {
  /** Packets the receiver counted. */
  packets: number;
  /** Seconds of the window the rate is taken over. */
  seconds: number;
  /** Other figures the run printed (e.g. latency percentiles). */
  extra?: Record<string, number>;
}

/**
 * Runs testpmd `tp` forwarding for `seconds`: its counts, and the window between the midpoints of
 * its `start` and `stop` commands (each a round trip over its stdin).
 */
export async function forwardFor(
  tp: Testpmd,
  seconds: number,
): Promise<{ stats: ForwardStats; seconds: number }> {
  const a = performance.now();
  await tp.startForwarding();
  const t0 = (a + performance.now()) / 2;
  await sleep(seconds * 1000);
  const b = performance.now();
  const stats = await tp.stopForwarding();
  const t1 = (b + performance.now()) / 2;
  return { stats, seconds: (t1 - t0) / 1000 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Frames above this take the jumbo settings ({@linkcode frameOptions}). */
export const SINGLE_BUFFER_MAX = 2036;

/**
 * testpmd options for `cfg.size`: `--txpkts`, and for jumbo frames `--max-pkt-len 9018` and
 * 10240-byte mbufs (one mbuf a frame; fewer of them, so the pool fits in 512 MB). `--txpkts`
 * then follows `--mbuf-size`: testpmd checks it against the mbuf size as it parses. A
 * virtio-user receiver (`scatter`) keeps its 2 KB mbufs and chains them (`--enable-scatter`
 * with mrg_rxbuf): the same five buffers a 9000-byte frame that sink `--mergeable` takes.
 */
export function frameOptions(cfg: RunConfig, scatter = false): Partial<TestpmdOptions> {
  if (cfg.size <= SINGLE_BUFFER_MAX) return { txpkts: cfg.size };
  if (scatter) return { extraArgs: ["--max-pkt-len=9018", "--enable-scatter"] };
  return {
    memMb: 512,
    totalNumMbufs: 8192,
    extraArgs: ["--max-pkt-len=9018", "--mbuf-size=10240", `--txpkts=${cfg.size}`],
  };
}

/** The `--vdev` of testpmd virtio-user port `index` on `path` (mrg_rxbuf on, DPDK's default). */
function virtioUserVdev(cfg: RunConfig, index: number, path: string): string {
  return `net_virtio_user${index},path=${path},queues=1,packed_vq=${cfg.packed ? 1 : 0},` +
    `queue_size=${cfg.queueSize},mrg_rxbuf=1`;
}

/** A testpmd virtio-user port (the driver side) on `cfg.sock`, on `cpus.driver`. */
export function cVirtioUser(
  cfg: RunConfig,
  mode: "txonly" | "rxonly",
  path = cfg.sock,
  measured = true,
): Promise<Testpmd> {
  const opts: TestpmdOptions = {
    vdev: virtioUserVdev(cfg, 0, path),
    forwardMode: mode,
    cpu: cpus.driver,
    txd: cfg.queueSize,
    rxd: cfg.queueSize,
    txonlyMultiFlow: mode === "txonly" && cfg.flows > 0,
    ...frameOptions(cfg, mode === "rxonly"),
  };
  if (measured) {
    opts.burst = cfg.burst;
    opts.lcores = cfg.lcores;
  }
  return Testpmd.start(opts);
}

/** A testpmd vhost port (the device side) listening on `cfg.sock`, on `cpus.device`. */
export function cVhost(
  cfg: RunConfig,
  mode: "txonly" | "rxonly" | "io",
  measured = true,
  extraPorts: string[] = [],
): Promise<Testpmd> {
  const extra = extraPorts.flatMap((p, i) => ["--vdev", `net_vhost${i + 1},iface=${p},queues=1`]);
  const opts: TestpmdOptions = {
    vdev: `net_vhost0,iface=${cfg.sock},queues=1`,
    forwardMode: mode,
    cpu: cpus.device,
    extraEalArgs: extra,
    removeFiles: extraPorts,
    ...frameOptions(cfg),
  };
  if (measured) {
    opts.burst = cfg.burst;
    opts.lcores = cfg.lcores;
  }
  return Testpmd.start(opts);
}

/** `deno run -A examples/NAME.ts ARGS` pinned to `cpu`, stdout piped. */
export function example(name: string, cpu: number, args: string[]): Deno.Command {
  return new Deno.Command("taskset", {
    args: ["-c", String(cpu), Deno.execPath(), "run", "-A", examplePath(name), ...args],
    stdout: "piped",
    stderr: "inherit",
  });
}

/** Absolute path of `examples/NAME.ts`. */
export function examplePath(name: string): string {
  return new URL(`../examples/${name}.ts`, import.meta.url).pathname;
}

/** The final `--json` line an example printed. */
export function report(stdout: Uint8Array): Record<string, number> {
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  try {
    return JSON.parse(lines.at(-1)!);
  } catch {
    throw new Error(`example printed no JSON report; its output ended:\n${lines.slice(-5)}`);
  }
}

/** Waits until `path` is a Unix socket (a listening example is up), at most `ms`. */
export async function waitForSocket(path: string, ms = 15000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await Deno.lstat(path).catch(() => null))?.isSocket) {
    if (performance.now() > deadline) throw new Error(`${path} did not appear in ${ms} ms`);
    await sleep(20);
  }
}

/** The ring and size options pktgen and sink share. */
function driverArgs(cfg: RunConfig): string[] {
  return [
    ...["--path", cfg.sock, "--duration", String(cfg.seconds), "--json"],
    ...["--queue-size", String(cfg.queueSize)],
    ...(cfg.burst !== undefined ? ["--burst", String(cfg.burst)] : []),
    ...(cfg.packed ? [] : ["--split"]),
  ];
}

// ── driver TX: who sends into testpmd net_vhost rxonly ──────────────────────────────────────

/** pktgen.ts into testpmd vhost rxonly: the receiver's count over pktgen's run time. */
export async function tsDriverTx(cfg: RunConfig): Promise<Counted> {
  await using rx = await cVhost(cfg, "rxonly", false);
  await rx.startForwarding();
  const flows = cfg.flows > 0 ? ["--flows", String(cfg.flows)] : [];
  const out = await example("pktgen", cpus.driver, [
    ...driverArgs(cfg),
    ...["--size", String(cfg.size), ...flows, "--quiet"],
  ]).output();
  const r = report(out.stdout);
  await drained(rx, r.tx_packets);
  return { packets: (await rx.stopForwarding()).rxPackets, seconds: r.seconds };
}

/** testpmd virtio-user txonly into testpmd vhost rxonly: the receiver's count over tx's window. */
export async function cDriverTx(cfg: RunConfig, measureTx = true): Promise<Counted> {
  await using rx = await cVhost(cfg, "rxonly", !measureTx);
  await rx.startForwarding();
  await using tx = await cVirtioUser(cfg, "txonly", cfg.sock, measureTx);
  const run = await forwardFor(tx, cfg.seconds);
  await drained(rx, run.stats.txPackets);
  return { packets: (await rx.stopForwarding()).rxPackets, seconds: run.seconds };
}

/** Waits (at most 1 s) until testpmd `rx` has received `sent` packets on port 0. */
async function drained(rx: Testpmd, sent: number): Promise<void> {
  const deadline = performance.now() + 1000;
  while ((await rx.stats()).rxPackets < sent && performance.now() < deadline) await sleep(10);
}

// ── driver RX: who receives from testpmd net_vhost txonly ───────────────────────────────────

/** sink.ts fed by testpmd vhost txonly: sink's count over sink's own run (the sender is always on). */
export async function tsDriverRx(cfg: RunConfig): Promise<Counted> {
  await using tx = await cVhost(cfg, "txonly", false);
  await tx.startForwarding();
  const jumbo = cfg.size > SINGLE_BUFFER_MAX ? ["--mergeable"] : [];
  const out = await example("sink", cpus.driver, [...driverArgs(cfg), ...jumbo, "--quiet"])
    .output();
  const r = report(out.stdout);
  return { packets: r.rx_packets, seconds: r.seconds };
}

/** testpmd virtio-user rxonly fed by testpmd vhost txonly: its count over its forwarding window. */
export async function cDriverRx(cfg: RunConfig, measureRx = true): Promise<Counted> {
  await using tx = await cVhost(cfg, "txonly", !measureRx);
  await tx.startForwarding();
  await using rx = await cVirtioUser(cfg, "rxonly", cfg.sock, measureRx);
  const run = await forwardFor(rx, cfg.seconds);
  return { packets: run.stats.rxPackets, seconds: run.seconds };
}

// ── device RX / TX: examples/device.ts against testpmd net_vhost ────────────────────────────

/** device.ts listening on `cfg.sock` in `mode`, pinned to `cpus.device`. */
function tsDevice(cfg: RunConfig, mode: string): Deno.ChildProcess {
  // --mrg-rxbuf: the features net_vhost offers (MRG_RXBUF, IN_ORDER with the defaults), so
  // DPDK's virtio-user negotiates the same set against both devices and runs the same Rx path
  // ("mergeable buffer Rx path"; without MRG_RXBUF it takes its "standard" one).
  const args = ["--path", cfg.sock, "--mode", mode, "--json", "--quiet", "--mrg-rxbuf"];
  if (mode === "source") args.push("--size", String(cfg.size));
  if (cfg.burst !== undefined) args.push("--burst", String(cfg.burst));
  return example("device", cpus.device, args).spawn();
}

/** device.ts sink fed by testpmd virtio-user txonly: the device's count over tx's window. */
export async function tsDeviceRx(cfg: RunConfig): Promise<Counted> {
  const device = tsDevice(cfg, "sink");
  let seconds = 0;
  try {
    await waitForSocket(cfg.sock);
    await using tx = await cVirtioUser(cfg, "txonly", cfg.sock, false);
    seconds = (await forwardFor(tx, cfg.seconds)).seconds;
    await sleep(100); // the device drains the ring; tx's exit then ends the session
  } finally {
    device.kill("SIGINT");
  }
  return { packets: report((await device.output()).stdout).from_driver_packets, seconds };
}

/** device.ts source drained by testpmd virtio-user rxonly: rxonly's count over its window. */
export async function tsDeviceTx(cfg: RunConfig): Promise<Counted> {
  const device = tsDevice(cfg, "source");
  try {
    await waitForSocket(cfg.sock);
    await using rx = await cVirtioUser(cfg, "rxonly", cfg.sock, false);
    const run = await forwardFor(rx, cfg.seconds);
    return { packets: run.stats.rxPackets, seconds: run.seconds };
  } finally {
    device.kill("SIGINT");
    await device.output();
  }
}

// ── forwarding: between two vhost-user ports, looped back by one testpmd virtio-user ────────

/**
 * testpmd io between net_vhost0 (`cfg.sock`) and net_vhost1 (`${cfg.sock}.b`) on
 * `cpus.device`, looped back by testpmd virtio-user io ({@linkcode loopThrough}).
 */
export async function cForward(cfg: RunConfig): Promise<Counted> {
  const b = `${cfg.sock}.b`;
  await using fwd = await cVhost(cfg, "io", true, [b]);
  await fwd.startForwarding();
  return await loopThrough(cfg, b);
}

/**
 * The TypeScript device forwarding between two vhost-user ports. Assumes the invocation
 * `device.ts --mode forward --path A --peer-path B` (adjust when the feature lands).
 */
export async function tsForward(cfg: RunConfig): Promise<Counted> {
  const b = `${cfg.sock}.b`;
  const device = example("device", cpus.device, [
    ...["--path", cfg.sock, "--peer-path", b, "--mode", "forward", "--json", "--quiet"],
  ]).spawn();
  try {
    await waitForSocket(cfg.sock);
    await waitForSocket(b);
    return await loopThrough(cfg, b);
  } finally {
    device.kill("SIGINT");
    await device.output();
  }
}

/**
 * One testpmd on `cpus.driver` with two virtio-user ports, one on each of the forwarder's
 * sockets, in io mode: whatever the forwarder passes A→B comes back B→A and the other way round,
 * a closed loop seeded by `start tx_first` (a ring's worth of txonly frames per port). The count
 * is the frames this testpmd received on both ports over its window: each passed the forwarder
 * once. The loop moves at the slower of its two forwarders, and both do the same work per frame
 * (one receive, one send), so a TypeScript forwarder faster than testpmd io would be capped.
 *
 * ```
 *   virtio-user0 ──A──► forwarder ──B──► virtio-user1 ─┐  (io, one lcore, both directions)
 *        ▲─────────────────────────────────────────────┘
 * ```
 *
 * Why not a txonly feeder and an rxonly drain: that is three pollers on two CPUs. The feeder and
 * the drain then take turns on one CPU in scheduler slices of milliseconds; while the drain is
 * off-CPU its 256-descriptor ring fills in microseconds and the forwarder's port 1 refuses the
 * rest (measured: 5–35 kframes/s against tens of Mpps for the loop).
 */
async function loopThrough(cfg: RunConfig, peerPath: string): Promise<Counted> {
  await using loop = await Testpmd.start({
    vdev: virtioUserVdev(cfg, 0, cfg.sock),
    extraEalArgs: ["--vdev", virtioUserVdev(cfg, 1, peerPath)],
    forwardMode: "io",
    cpu: cpus.driver,
    txd: cfg.queueSize,
    rxd: cfg.queueSize,
    ...frameOptions(cfg),
  });
  const bursts = Math.max(1, Math.ceil(cfg.queueSize / 32)); // testpmd's default burst is 32
  const a = performance.now();
  const out = await loop.command(`start tx_first ${bursts}`);
  if (!/packet forwarding - ports=/.test(out)) {
    throw new Error(`testpmd loop: "start tx_first" did not start forwarding: ${out.trim()}`);
  }
  const t0 = (a + performance.now()) / 2;
  await sleep(cfg.seconds * 1000);
  const b = performance.now();
  const stats = await loop.stopForwarding();
  const t1 = (b + performance.now()) / 2;
  return { packets: stats.rxPackets, seconds: (t1 - t0) / 1000 };
}

// ── latency: pktgen's latency mode through testpmd io ───────────────────────────────────────

/**
 * pktgen `--latency --rate MPPS` through testpmd io (port 0 back to itself): its round-trip
 * percentiles (`latency_us`: p50, p99, p99.9, max, µs) and the probes lost. bench/latency.ts
 * runs the fuller latency table (both rings, the run-queue waits).
 */
export async function tsLatency(cfg: RunConfig, mpps: number): Promise<Counted> {
  await using io = await cVhost(cfg, "io", false);
  await io.startForwarding();
  const out = await example("pktgen", cpus.driver, [
    ...driverArgs(cfg),
    ...["--size", String(cfg.size), "--latency", "--rate", `${mpps}M`, "--quiet"],
    ...["--latency-warmup", "1000"], // start-up (connect, JIT tier-up) is not the round trip
  ]).output();
  const r = report(out.stdout) as unknown as Record<string, Record<string, number>>;
  const l = r.latency_us;
  return {
    packets: r.rx_packets as unknown as number,
    seconds: r.seconds as unknown as number,
    extra: {
      p50_us: l.p50,
      p99_us: l.p99,
      "p99.9_us": l["p99.9"],
      max_us: l.max,
      lost: r.lost as unknown as number,
    },
  };
}
