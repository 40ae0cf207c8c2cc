/**
 * No garbage collection in steady state (issue 12 part 6): each data path runs at full rate for a
 * few seconds against its real peer under `--v8-flags=--trace-gc`, and no scavenge or
 * mark-sweep/compact line may appear in steady state.
 *
 * ```
 *   pktgen --flows --latency ──► testpmd net_vhost io ──► pktgen (probes measured)
 *   testpmd net_vhost txonly ──► sink
 *   testpmd net_virtio_user txonly ──► device.ts --mode sink
 *   testpmd net_virtio_user io (start tx_first) ◄──► device.ts --mode echo
 *   testpmd virtio_user0 io ──A──► device.ts --mode forward ──B──► testpmd virtio_user1 io (a loop)
 * ```
 *
 * Steady state, exactly: once the program printed its third per-second line (start-up, and V8
 * tiering the hot loops up, are over) the test sends it SIGUSR2; the preloaded gc_warm_up.ts
 * then collects everything (a full GC: the young generation is empty) and prints a marker line.
 * Steady state runs from that marker to the last per-second line, and must hold no GC line.
 * Ordering is exact, not timed: V8's trace lines (stdout, line-buffered through `stdbuf -oL`) and
 * the program's lines (stderr) go through one pipe in the order the process wrote them.
 *
 * Sensitivity: each semi-space is capped at 1 MB (`--max-semi-space-size=1`), so after the marker
 * a scavenge comes after at most ~1 MB of allocation. An allocation per burst fails every time:
 * a 16-byte heap number at a few hundred thousand bursts a second is several MB/s. What a run
 * allocates between bursts (an event-loop turn ten times a second, the link check every 10 ms,
 * the per-second line) is a few tens of KB/s, far from 1 MB in the four seconds of steady state.
 *
 * What allocated before (the intermittent 1-2 MB/s of sink, pktgen's scavenge every few tens of
 * ms): doubles crossing calls that TurboFan did not inline — a clock reading passed to
 * `Pacer.due`, `Infinity - packets` returned by the run meter. V8 boxes such a double (a heap
 * number per call); whether a call is inlined depends on TurboFan's inlining budget and the order
 * it meets the call sites, so the same program allocated in one run and not in the next. The loop
 * now keeps its clock in a typed array (examples/rate.ts `LoopClock`) and passes small integers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { isExecutable, requirePeer, requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";
import { STEADY_STATE_MARKER } from "./gc_warm_up.ts";

/** `stdbuf` (coreutils) from PATH: makes V8's trace lines line-buffered. */
const STDBUF = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "")
  .map((d) => `${d}/stdbuf`).find((p) => isExecutable(p)) ?? null;
const ignore = requireTestpmd(1) ||
  requirePeer("stdbuf (coreutils)", STDBUF !== null, "sudo apt-get install coreutils");

/** Seconds each program runs: three of start-up, about four of steady state. */
const SECONDS = 7;
/** Per-second lines that are still start-up. */
const START_UP_TICKS = 3;
/** Per-second lines that must follow the marker: a steady state of at least this many seconds. */
const MIN_STEADY_TICKS = 2;
const RUN_TIMEOUT_MS = 60_000;
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

/** A per-second rate line of pktgen (LiveLine), sink (RunMeter) or device.ts. */
const TICK = /^\s*\d+ s {2}/;
/** A V8 `--trace-gc` line: `[pid:isolate]  1234 ms: Scavenge ...` (or Mark-Compact, ...). */
const GC =
  /^\[\d+:0x[0-9a-f]+(?::\d+)?\]\s+\d+ ms: ((?:Minor )?Mark-(?:Compact|Sweep)|Scavenge|MinorMS)/i;

/**
 * Runs `deno run -A examples/NAME.ts ARGS` with GC tracing and the warm-up preload; stdout and
 * stderr as one stream. After the START_UP_TICKS-th per-second line it sends SIGUSR2 once.
 */
async function traced(name: string, args: string[]): Promise<string[]> {
  const child = new Deno.Command("sh", {
    args: [
      ...["-c", 'exec "$@" 2>&1', "sh", STDBUF!, "-oL", Deno.execPath()],
      ...["run", "-A", "--preload", "tests/gc_warm_up.ts"],
      "--v8-flags=--trace-gc,--expose-gc,--max-semi-space-size=1",
      `examples/${name}.ts`,
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const lines: string[] = [];
  let ticks = 0;
  let partial = "";
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        // sh execs stdbuf, which execs deno: the child's pid is the program's.
        if (TICK.test(line) && ++ticks === START_UP_TICKS) child.kill("SIGUSR2");
      }
    }
    lines.push(partial);
    const { code } = await child.status;
    assert.equal(code, 0, `${name} exited ${code}:\n${lines.join("\n")}`);
    return lines;
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts no GC line between the marker and the last per-second line. */
function assertNoGc(what: string, lines: string[]): void {
  const marker = lines.indexOf(STEADY_STATE_MARKER);
  assert.ok(marker >= 0, `${what}: no steady-state marker; output:\n${lines.join("\n")}`);
  const ticks = lines.flatMap((l, i) => (i > marker && TICK.test(l) ? [i] : []));
  assert.ok(
    ticks.length >= MIN_STEADY_TICKS,
    `${what}: ${ticks.length} per-second lines after the marker, expected at least ` +
      `${MIN_STEADY_TICKS}; output:\n${lines.join("\n")}`,
  );
  const gc = lines.slice(marker, ticks.at(-1)! + 1).filter((l) => GC.test(l));
  assert.deepEqual(
    gc,
    [],
    `${what}: ${gc.length} GC events in ${ticks.length} s of steady state (an allocation per ` +
      `burst or packet; see the module doc):\n${gc.join("\n")}`,
  );
}

/** Waits (bounded) until `path` is a listening socket's file. */
async function socketAppears(path: string): Promise<void> {
  for (let i = 0; i < 500 && !(await Deno.lstat(path).catch(() => null))?.isSocket; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A temporary directory for one test's socket, removed afterwards. */
async function withSocket(fn: (sock: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(`${dir}/vhost.sock`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** testpmd net_vhost forwarding in `forwardMode` on a fresh socket, for the run of `fn`. */
function withVhostPeer(
  forwardMode: "io" | "txonly",
  fn: (sock: string) => Promise<void>,
): Promise<void> {
  return withSocket(async (sock) => {
    await using tp = await Testpmd.start({
      vdev: `net_vhost0,iface=${sock},queues=1`,
      forwardMode,
      cpu: 1,
    });
    await tp.startForwarding();
    await fn(sock);
  });
}

Deno.test({
  name: "gc: pktgen --flows --latency through testpmd io allocates nothing in steady state",
  ignore,
  fn: () =>
    withVhostPeer("io", async (sock) => {
      const lines = await traced("pktgen", [
        ...["--path", sock, "--duration", String(SECONDS)],
        ...["--flows", "64", "--flow-field", "src-ip,dst-port", "--latency"],
      ]);
      assertNoGc("pktgen --flows --latency", lines);
      // The probes went around: the latency path ran.
      assert.ok(
        lines.some((l) => /^latency µs: .* probes [1-9]\d* sent, [1-9]/.test(l)),
        lines.join("\n"),
      );
    }),
});

Deno.test({
  name: "gc: sink fed by testpmd net_vhost txonly allocates nothing in steady state",
  ignore,
  fn: () =>
    withVhostPeer("txonly", async (sock) => {
      assertNoGc("sink", await traced("sink", ["--path", sock, "--duration", String(SECONDS)]));
    }),
});

/**
 * device.ts modes and how testpmd (net_virtio_user) drives each: `sink` is fed by txonly; `echo`
 * by io started with `tx_first` (one burst, then forwarding what the device echoes, forever).
 */
const DEVICE_MODES = [
  { mode: "sink", forwardMode: "txonly", start: "start" },
  { mode: "echo", forwardMode: "io", start: "start tx_first 4" },
] as const;

for (const { mode, forwardMode, start } of DEVICE_MODES) {
  Deno.test({
    name: `gc: device.ts --mode ${mode} with testpmd net_virtio_user ${forwardMode} allocates ` +
      "nothing in steady state",
    ignore,
    fn: () =>
      withSocket(async (sock) => {
        const device = traced("device", [
          ...["--path", sock, "--mode", mode, "--duration", String(SECONDS)],
        ]);
        await socketAppears(sock);
        await using peer = await Testpmd.start({
          vdev: `net_virtio_user0,path=${sock},queues=1`,
          forwardMode,
          cpu: 0,
        });
        const out = await peer.command(start);
        assert.match(out, /packet forwarding - ports=|already started/, out);
        // The device ends itself after SECONDS; the peer stays until then.
        assertNoGc(`device (${mode})`, await device);
      }),
  });
}

Deno.test({
  name: "gc: device.ts --mode forward between two testpmd net_virtio_user io ports allocates " +
    "nothing in steady state",
  ignore,
  fn: () =>
    withSocket(async (sock) => {
      const b = `${sock}.b`;
      const device = traced("device", [
        ...["--path", sock, "--peer-path", b, "--mode", "forward", "--duration", String(SECONDS)],
      ]);
      await socketAppears(sock);
      await socketAppears(b);
      // Port 0 on A, port 1 on B: io sends what arrives on one port out of the other, so the
      // frames tx_first seeds circle A → device → B → testpmd → A for the whole run.
      await using peer = await Testpmd.start({
        vdev: `net_virtio_user0,path=${sock},queues=1`,
        extraEalArgs: ["--vdev", `net_virtio_user1,path=${b},queues=1`],
        forwardMode: "io",
        cpu: 0,
      });
      const out = await peer.command("start tx_first 4");
      assert.match(out, /packet forwarding - ports=2|already started/, out);
      const lines = await device;
      assertNoGc("device (forward)", lines);
      // Frames went both ways through the device.
      assert.ok(
        lines.some((l) => /forwarded A->B [1-9]\d* .*B->A [1-9]/.test(l)),
        lines.join("\n"),
      );
    }),
});
