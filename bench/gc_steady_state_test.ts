/**
 * No garbage collection in steady state: each data path runs for a few seconds under
 * `--v8-flags=--trace-gc`, and no scavenge or mark-sweep/compact line may appear between the
 * program's first and last per-second rate line.
 *
 * ```
 *   pktgen.ts (no --path) ──► built-in device (sink, Worker)
 *   testpmd net_vhost txonly ──► sink.ts
 *   testpmd net_virtio_user txonly ──► device.ts --mode sink
 *   testpmd net_virtio_user rxonly ◄── device.ts --mode source
 * ```
 *
 * Start-up, precisely: everything before the third per-second line ("   3 s  ..."), which the
 * program prints after three seconds of traffic; teardown: everything after the last one. What
 * lies between is steady state. Three seconds, not one: V8 tiers the hot loops up to optimized code
 * in the first second or two (longer on a loaded machine), and that compilation leaves garbage in
 * the young generation that one scavenge soon after clears (sink.ts shows one at ~1.9 s, then none
 * for the next 13 s). Ordering is exact, not timed: V8's trace lines (stdout, line-buffered
 * through `stdbuf -oL`) and the rate lines (stderr) go through one pipe in the order the process
 * wrote them. Trace lines from every isolate count (the built-in device runs on a Worker).
 *
 * Sensitivity: each semi-space is capped at 1 MB (`--max-semi-space-size=1`), so a young
 * generation fills after at most ~1 MB of allocation. The rule is: no full (mark) collection, and
 * at most one scavenge in the steady-state window of about six seconds. That holds for any
 * program allocating less than ~150 KB/s, whatever the young generation held when start-up ended
 * (with zero scavenges required, a trickle that only tops up what start-up left would land one
 * in the window now and then: a test that fails at random). It fails every time for an
 * allocation per packet or per burst: at a few hundred thousand bursts a second even 16 bytes
 * each is several MB/s, dozens of scavenges. What a run allocates between bursts (an event-loop
 * turn ten times a second, the link check every few ms, the per-second line) is a few tens of
 * KB/s: a scavenge every half minute or more with this cap, every several minutes with V8's default.
 *
 * Run with `deno task gc` (not part of `deno task test`): on a loaded 2-core machine the receive
 * path of sink.ts sometimes allocates 1-2 MB/s (a scavenge a second) and sometimes nothing, and
 * pktgen's rate of scavenges moves with it; until that is found this check is a diagnostic, not
 * a gate (a test that fails at random would be worse than none).
 *
 * @module
 */

import assert from "node:assert/strict";
import { isExecutable, requirePeer, requireTestpmd } from "../tests/peers.ts";
import { Testpmd } from "../tests/testpmd.ts";

/** `stdbuf` (coreutils) from PATH: makes V8's trace lines line-buffered. */
const STDBUF = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "")
  .map((d) => `${d}/stdbuf`).find((p) => isExecutable(p)) ?? null;
const ignore = requireTestpmd(1) ||
  requirePeer("stdbuf (coreutils)", STDBUF !== null, "sudo apt-get install coreutils");

/** Seconds each program runs: a steady-state window of about six seconds after start-up. */
const SECONDS = 10;
/** Per-second lines that are still start-up. */
const START_UP_TICKS = 3;
const RUN_TIMEOUT_MS = 60_000;
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

/** A per-second rate line of pktgen, sink (RunMeter) or device.ts. */
const TICK = /^\s*\d+ s {2}/;
/** A V8 `--trace-gc` line: `[pid:isolate]  1234 ms: Scavenge ...` (or Mark-Compact, ...). */
const GC =
  /^\[\d+:(0x[0-9a-f]+)(?::\d+)?\]\s+(\d+) ms: ((?:Minor )?Mark-(?:Compact|Sweep)|Scavenge|MinorMS)/i;

interface Traced {
  lines: string[];
  code: number;
}

/** Runs `deno run -A --v8-flags=--trace-gc examples/NAME.ts ARGS`, stdout and stderr as one stream. */
async function traced(name: string, args: string[]): Promise<Traced> {
  const child = new Deno.Command("sh", {
    args: [
      ...["-c", 'exec "$@" 2>&1', "sh", STDBUF!, "-oL", Deno.execPath()],
      ...[
        "run",
        "-A",
        "--v8-flags=--trace-gc,--max-semi-space-size=1",
        `examples/${name}.ts`,
        ...args,
      ],
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  try {
    const out = await child.output();
    return { lines: new TextDecoder().decode(out.stdout).split("\n"), code: out.code };
  } finally {
    clearTimeout(timer);
  }
}

/** GC lines between the end of start-up and the last rate line; throws when there is no window. */
function steadyStateGc(run: Traced): string[] {
  const ticks = run.lines.flatMap((l, i) => (TICK.test(l) ? [i] : []));
  assert.ok(
    ticks.length >= START_UP_TICKS + 2,
    `expected at least ${START_UP_TICKS + 2} per-second lines (exit ${run.code}); output:\n${
      run.lines.join("\n")
    }`,
  );
  return run.lines.slice(ticks[START_UP_TICKS - 1], ticks.at(-1)! + 1).filter((l) => GC.test(l));
}

function assertNoGc(what: string, run: Traced): void {
  const gc = steadyStateGc(run);
  const full = gc.filter((l) => !/Scavenge/.test(l));
  assert.ok(
    gc.length <= 1 && full.length === 0,
    `${what}: ${gc.length} GC events in steady state (from per-second line ${START_UP_TICKS} ` +
      `to the last; at most one scavenge allowed, see the module doc):\n${gc.join("\n")}`,
  );
  if (gc.length > 0) console.log(`  ${what}: one scavenge in steady state (allowed): ${gc[0]}`);
}

Deno.test({
  name:
    "gc: pktgen into the built-in device (Worker) allocates nothing per burst (at most one scavenge in steady state)",
  ignore: STDBUF === null,
  async fn() {
    const run = await traced("pktgen", ["--duration", String(SECONDS)]);
    assert.equal(run.code, 0, run.lines.join("\n"));
    assertNoGc("pktgen + built-in device", run);
  },
});

Deno.test({
  name:
    "gc: sink fed by testpmd net_vhost txonly allocates nothing per burst (at most one scavenge in steady state)",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sock = `${dir}/vhost.sock`;
    try {
      await using tx = await Testpmd.start({
        vdev: `net_vhost0,iface=${sock},queues=1`,
        forwardMode: "txonly",
        cpu: 1,
      });
      await tx.startForwarding();
      const run = await traced("sink", ["--path", sock, "--duration", String(SECONDS)]);
      assert.equal(run.code, 0, run.lines.join("\n"));
      assertNoGc("sink", run);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const [mode, feeder] of [["sink", "txonly"], ["source", "rxonly"]] as const) {
  Deno.test({
    name: `gc: device.ts --mode ${mode} with testpmd net_virtio_user ${feeder} runs without GC ` +
      "in steady state",
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir();
      const sock = `${dir}/vhost.sock`;
      try {
        const device = traced("device", [
          ...["--path", sock, "--mode", mode, "--duration", String(SECONDS)],
        ]);
        for (let i = 0; i < 500 && !(await Deno.lstat(sock).catch(() => null))?.isSocket; i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        {
          await using peer = await Testpmd.start({
            vdev: `net_virtio_user0,path=${sock},queues=1`,
            forwardMode: feeder,
            cpu: 0,
          });
          await peer.startForwarding();
          // The device ends itself after SECONDS; the peer stays until then.
          const run = await device;
          assert.equal(run.code, 0, run.lines.join("\n"));
          assertNoGc(`device (${mode})`, run);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
