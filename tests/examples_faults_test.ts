/**
 * The example programs when the run does not end by itself: the peer (`dpdk-testpmd`) killed
 * with SIGKILL mid-run, and the example sent SIGINT or SIGTERM:
 *
 * ```
 *   pktgen --duration 60 ──► testpmd rxonly  ── kill -9 ──► pktgen: one line, summary, exit 1
 *   sink   --count 1e9   ◄── testpmd txonly  ── kill -9 ──► sink:   one line, summary, exit 1
 *   pktgen / sink ◄── SIGINT / SIGTERM ──► summary, exit 130 / 143
 *   device --connect ──► testpmd net_virtio_user server=1 txonly ── kill -9 ──► exit 1
 *   device (listening, nobody connected) ──► sleeps in poll(2): a few % of a core at most
 *   device ◄── SIGINT / SIGTERM ──► summary, socket file removed, exit 130 / 143
 * ```
 *
 * No stack trace is printed for any of these (they are expected conditions).
 *
 * @module
 */

import assert from "node:assert/strict";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(1);

/** An example still running this long after its peer died or it was signalled fails the test. */
const EXIT_TIMEOUT_MS = 30_000;
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

/** A running example with its output collected. */
class Example {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<Deno.CommandOutput>;
  stderr = "";

  constructor(name: string, args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `examples/${name}.ts`, ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#output = this.#child.output();
  }

  get pid(): number {
    return this.#child.pid;
  }

  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Waits for the exit (SIGKILL after {@linkcode EXIT_TIMEOUT_MS}: the test then fails). */
  async exit(): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, EXIT_TIMEOUT_MS);
    const out = await this.#output;
    clearTimeout(timer);
    const dec = new TextDecoder();
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut,
    };
  }
}

/** Polls `cond` every 20 ms until it holds or `ms` pass. */
async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace on stderr:\n${stderr}`);
  assert.doesNotMatch(stderr, /Uncaught/, `no uncaught error:\n${stderr}`);
}

function jsonLine(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
}

type Ending = "kill -9 peer" | "SIGINT" | "SIGTERM";
const EXPECTED: Record<Ending, { code: number; line: RegExp; ended: string }> = {
  "kill -9 peer": { code: 1, line: /: the peer is gone: .*hung up/, ended: "link down" },
  SIGINT: { code: 130, line: /: interrupted \(SIGINT\)/, ended: "SIGINT" },
  SIGTERM: { code: 143, line: /: terminated \(SIGTERM\)/, ended: "SIGTERM" },
};

for (const name of ["pktgen", "sink"] as const) {
  for (const ending of ["kill -9 peer", "SIGINT", "SIGTERM"] as Ending[]) {
    Deno.test({
      name: `examples/${name}.ts against testpmd, ${ending}: one line, summary, exit ${
        EXPECTED[ending].code
      }`,
      ignore,
      async fn() {
        const dir = await Deno.makeTempDir({ prefix: "examples-faults-" });
        const sock = `${dir}/vhost.sock`;
        const tp = await Testpmd.start({
          vdev: `net_vhost0,iface=${sock},queues=1`,
          forwardMode: name === "pktgen" ? "rxonly" : "txonly",
        });
        try {
          await tp.waitForSocket(sock);
          if (name === "pktgen") await tp.startForwarding();
          const args = ["--path", sock, "--json"];
          args.push(...(name === "pktgen" ? ["--duration", "600"] : ["--count", "1000000000"]));
          const ex = new Example(name, args);
          assert.ok(await waitFor(() => tp.linkUp(), EXIT_TIMEOUT_MS), "the example connected");
          if (name === "sink") await tp.startForwarding();
          // Frames flow before the ending: testpmd's counters move.
          assert.ok(
            await waitFor(async () => {
              const s = await tp.stats();
              return (name === "pktgen" ? s.rxPackets : s.txPackets) > 10_000;
            }, EXIT_TIMEOUT_MS),
            "frames flowed",
          );
          if (ending === "kill -9 peer") await tp.killHard();
          else ex.kill(ending);
          const run = await ex.exit();
          assert.ok(!run.timedOut, `${name} exited by itself; stderr:\n${run.stderr}`);
          const want = EXPECTED[ending];
          assert.equal(run.code, want.code, `exit code; stderr:\n${run.stderr}`);
          assert.match(run.stderr, want.line);
          assertNoStackTrace(run.stderr);
          const report = jsonLine(run.stdout);
          assert.equal(report.ended_by, want.ended, "the summary says how the run ended");
          const moved = name === "pktgen" ? report.tx_packets : report.rx_packets;
          assert.ok(typeof moved === "number" && moved > 0, `summary counts: ${run.stdout}`);
          console.log(
            `  ${name}, ${ending}: exit ${run.code}; ${run.stderr.trim().split("\n")[0]}`,
          );
        } finally {
          await tp.killHard();
          await Deno.remove(dir, { recursive: true });
        }
      },
    });
  }
}

Deno.test({
  name: "examples/device.ts --connect to testpmd (virtio-user server), kill -9: one line, exit 1",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "examples-faults-" });
    const sock = `${dir}/virtio-user.sock`;
    // DPDK 22.11's virtio-user in server mode waits in accept() before its prompt appears.
    const starting = Testpmd.start({
      vdev: `net_virtio_user0,path=${sock},queues=1,server=1,packed_vq=1,queue_size=256`,
      forwardMode: "txonly",
    });
    starting.catch(() => {});
    let tp: Testpmd | null = null;
    try {
      const isSocket = () => Deno.lstat(sock).then((st) => st.isSocket === true, () => false);
      assert.ok(await waitFor(isSocket, EXIT_TIMEOUT_MS), "testpmd's socket appears");
      // The file exists from bind(); listen() may come a moment later: retry a refused connect.
      let ex: Example | null = null;
      const deadline = Date.now() + EXIT_TIMEOUT_MS;
      while (ex === null) {
        const attempt = new Example("device", [
          "--path",
          sock,
          "--connect",
          "--mode",
          "sink",
          "--json",
        ]);
        const early = await Promise.race([
          attempt.exit(),
          new Promise<null>((r) => setTimeout(() => r(null), 1000)),
        ]);
        if (early === null) ex = attempt;
        else if (!/ECONNREFUSED/.test(early.stderr) || Date.now() > deadline) {
          throw new Error(`device.ts --connect failed: ${early.stderr}`);
        }
      }
      tp = await starting;
      const peer = tp;
      assert.ok(await waitFor(() => peer.linkUp(), EXIT_TIMEOUT_MS), "the device connected");
      await peer.startForwarding();
      assert.ok(
        await waitFor(async () => (await peer.stats()).txPackets > 10_000, EXIT_TIMEOUT_MS),
        "frames flowed",
      );
      await peer.killHard();
      const run = await ex.exit();
      assert.ok(!run.timedOut, `device exited by itself; stderr:\n${run.stderr}`);
      assert.equal(run.code, 1, `exit code; stderr:\n${run.stderr}`);
      assert.match(run.stderr, /device: the frontend is gone/);
      assertNoStackTrace(run.stderr);
      const report = jsonLine(run.stdout);
      assert.ok((report.from_driver_packets as number) > 0, `summary counts: ${run.stdout}`);
    } finally {
      await (tp ?? await starting.catch(() => null))?.killHard();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** CPU ticks (utime + stime, 1/CLK_TCK s) a process used so far, from /proc/PID/stat. */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`examples/device.ts idle with nobody connected sleeps; ${signal} removes the socket`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "examples-idle-" });
    const sock = `${dir}/device.sock`;
    try {
      const ex = new Example("device", ["--path", sock, "--mode", "sink", "--json"]);
      assert.ok(
        await waitFor(() => Deno.stat(sock).then(() => true, () => false), EXIT_TIMEOUT_MS),
        "the device listens",
      );
      const pid = ex.pid;
      const before = cpuTicks(pid), t0 = performance.now();
      await new Promise((r) => setTimeout(r, 3000)); // a measurement window, not a synchronization
      const ticks = cpuTicks(pid) - before, seconds = (performance.now() - t0) / 1000;
      const share = ticks / 100 / seconds; // CLK_TCK is 100 on Linux
      console.log(
        `  idle device: ${(share * 100).toFixed(2)}% of a core over ${seconds.toFixed(1)} s`,
      );
      // A busy loop would use ~100%; sleeping in poll(2) uses well under 1% (measured 0.3%).
      assert.ok(share < 0.1, `idle device used ${(share * 100).toFixed(1)}% of a core`);
      ex.kill(signal);
      const run = await ex.exit();
      assert.equal(run.code, signal === "SIGINT" ? 130 : 143, `exit code; stderr:\n${run.stderr}`);
      assert.equal(jsonLine(run.stdout).ended_by, signal);
      assertNoStackTrace(run.stderr);
      await assert.rejects(() => Deno.stat(sock), "the socket file is removed");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test({
  name: "examples/pktgen.ts --server: testpmd (client=1) killed -9 and restarted, traffic resumes",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "examples-server-" });
    const sock = `${dir}/virtio-user.sock`;
    const vdev = `net_vhost0,iface=${sock},queues=1,client=1`;
    let tp = await Testpmd.start({ vdev, forwardMode: "rxonly" });
    try {
      await tp.startForwarding();
      const ex = new Example("pktgen", ["--path", sock, "--server", "--duration", "600", "--json"]);
      for (let incarnation = 0; incarnation < 2; incarnation++) {
        const peer = tp;
        assert.ok(await waitFor(() => peer.linkUp(), EXIT_TIMEOUT_MS), "pktgen's port is up");
        assert.ok(
          await waitFor(async () => (await peer.stats()).rxPackets > 10_000, EXIT_TIMEOUT_MS),
          `incarnation ${incarnation}: frames flowed`,
        );
        if (incarnation === 0) {
          await tp.killHard();
          tp = await Testpmd.start({ vdev, forwardMode: "rxonly" });
          await tp.startForwarding();
        }
      }
      ex.kill("SIGINT");
      const run = await ex.exit();
      assert.equal(run.code, 130, `exit code; stderr:\n${run.stderr}`);
      assertNoStackTrace(run.stderr);
      assert.equal(jsonLine(run.stdout).ended_by, "SIGINT");
      await assert.rejects(() => Deno.lstat(sock), "pktgen removed its socket file");
    } finally {
      await tp.killHard();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
