/**
 * The example programs run as users run them (`deno run -A examples/....ts --path SOCK ...`)
 * against DPDK's vhost PMD in `dpdk-testpmd`, for packed and split rings:
 *
 * ```
 *   pktgen --count N ──vhost-user──► testpmd rxonly   RX-packets == N, JSON tx_packets == N
 *   sink   --count N ◄──vhost-user── testpmd txonly   exit 0, JSON rx_packets == N
 *   pktgen --size 9000 --count N ──► testpmd rxonly (jumbo)    RX-packets == N, RX-bytes == 9000 N
 *   sink --mergeable --count N ◄── testpmd txonly 9000 B       JSON rx_packets == N, bytes 9000 N
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { runBounded } from "./helpers.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(1);
const ignoreJumbo = requireTestpmd(1, 512);

const JUMBO = 9000;
const JUMBO_FRAMES = 100_000;
/** testpmd for 9000-byte frames; `--txpkts` after `--mbuf-size` (checked as testpmd parses). */
const JUMBO_TESTPMD = {
  memMb: 512,
  totalNumMbufs: 8192,
  extraArgs: ["--max-pkt-len=9018", "--mbuf-size=10240", `--txpkts=${JUMBO}`],
};

const FRAMES = 1_000_000;
/** An example that has not finished by then is killed and the test fails. */
const RUN_TIMEOUT_MS = 60_000;

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

interface ExampleRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON. */
  report: Record<string, unknown>;
}

/** Runs `deno run -A examples/<name>.ts ...args` from the repository root; never hangs. */
async function runExample(name: string, args: string[]): Promise<ExampleRun> {
  const run = await runBounded(Deno.execPath(), ["run", "-A", `examples/${name}.ts`, ...args], {
    cwd: ROOT,
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const { stdout, stderr } = run;
  const what = `examples/${name}.ts ${args.join(" ")}`;
  if (run.timedOut) {
    throw new Error(`${what} did not finish in ${RUN_TIMEOUT_MS} ms\nstderr:\n${stderr}`);
  }
  const last = stdout.trim().split("\n").at(-1) ?? "";
  let report: Record<string, unknown>;
  try {
    report = JSON.parse(last);
  } catch {
    throw new Error(
      `${what} exited ${run.code} without a JSON line\nstdout:\n${stdout}\nstderr:\n${stderr}`,
    );
  }
  return { code: run.code, stdout, stderr, report };
}

async function withVhost(
  forwardMode: "rxonly" | "txonly",
  body: (tp: Testpmd, sock: string) => Promise<void>,
  jumbo = false,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "examples-testpmd-" });
  const sock = `${dir}/vhost.sock`;
  try {
    await using tp = await Testpmd.start({
      vdev: `net_vhost0,iface=${sock},queues=1`,
      forwardMode,
      ...(jumbo ? JUMBO_TESTPMD : {}),
    });
    await tp.waitForSocket(sock);
    await body(tp, sock);
    await tp.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const split of [false, true]) {
  const ring = split ? "split" : "packed";
  const ringArgs = split ? ["--split"] : [];

  Deno.test({
    name: `examples/pktgen.ts --count ${FRAMES} (${ring}) -> testpmd rxonly counts exactly`,
    ignore,
    async fn() {
      await withVhost("rxonly", async (tp, sock) => {
        await tp.startForwarding(); // the receiving side runs before pktgen sends
        const run = await runExample("pktgen", [
          "--path",
          sock,
          "--count",
          String(FRAMES),
          "--json",
          ...ringArgs,
        ]);
        assert.equal(run.code, 0, `pktgen exit code; stderr:\n${run.stderr}`);
        const counts = await tp.stopForwarding();
        console.log(`  pktgen ${ring}: ${JSON.stringify(run.report)}`);
        assert.equal(run.report.tx_packets, FRAMES, "pktgen's JSON tx_packets");
        assert.equal(run.report.tx_bytes, FRAMES * 64, "pktgen's JSON tx_bytes (64 B frames)");
        assert.equal(run.report.in_flight_at_exit, 0, "pktgen drained its ring before exit");
        assert.equal(counts.rxPackets, FRAMES, "testpmd RX-packets");
        assert.equal(counts.rxDropped, 0, "testpmd RX-dropped");
      });
    },
  });

  Deno.test({
    name: `examples/pktgen.ts --size ${JUMBO} --count ${JUMBO_FRAMES} (${ring}) -> testpmd ` +
      `rxonly: exact frames and bytes`,
    ignore: ignoreJumbo,
    async fn() {
      await withVhost("rxonly", async (tp, sock) => {
        await tp.startForwarding();
        const run = await runExample("pktgen", [
          ...["--path", sock, "--size", String(JUMBO), "--count", String(JUMBO_FRAMES)],
          ...["--json", "--quiet", ...ringArgs],
        ]);
        assert.equal(run.code, 0, `pktgen exit code; stderr:\n${run.stderr}`);
        const port = await tp.stats();
        const counts = await tp.stopForwarding();
        assert.equal(run.report.tx_packets, JUMBO_FRAMES, "pktgen's JSON tx_packets");
        assert.equal(counts.rxPackets, JUMBO_FRAMES, "testpmd RX-packets");
        assert.equal(port.rxBytes, JUMBO_FRAMES * JUMBO, "testpmd RX-bytes (9000 B frames)");
      }, true);
    },
  });

  for (const mergeable of [false, true]) {
    const frames = mergeable ? JUMBO_FRAMES : FRAMES;
    const size = mergeable ? JUMBO : 64;
    const sinkArgs = mergeable ? ["--mergeable", "--quiet"] : [];
    Deno.test({
      name: mergeable
        ? `examples/sink.ts --mergeable --count ${frames} (${ring}) <- testpmd txonly ${size} B: ` +
          `exact frames and bytes`
        : `examples/sink.ts --count ${frames} (${ring}) <- testpmd txonly: exits 0 with all`,
      ignore: mergeable ? ignoreJumbo : ignore,
      fn: () => sinkFrom(ring, ringArgs, sinkArgs, frames, size, mergeable),
    });
  }
}

/** sink.ts `--count frames` fed by testpmd txonly of `size`-byte frames: exactly that many. */
function sinkFrom(
  ring: string,
  ringArgs: string[],
  sinkArgs: string[],
  frames: number,
  size: number,
  jumbo: boolean,
): Promise<void> {
  return withVhost("txonly", async (tp, sock) => {
    const running = runExample("sink", [
      ...["--path", sock, "--count", String(frames), "--json", ...ringArgs, ...sinkArgs],
    ]);
    let finished = false;
    running.finally(() => finished = true).catch(() => {});
    // sink has filled its receive ring once the link is up; only then does testpmd send.
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    while (!finished && Date.now() < deadline && !(await tp.linkUp())) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!finished) await tp.startForwarding();
    const run = await running;
    assert.equal(run.code, 0, `sink exit code; stderr:\n${run.stderr}`);
    const counts = await tp.stopForwarding();
    console.log(`  sink ${ring}: ${JSON.stringify(run.report)}; testpmd sent ${counts.txPackets}`);
    assert.equal(run.report.rx_packets, frames, "sink's JSON rx_packets");
    assert.equal(run.report.rx_bytes, frames * size, `sink's JSON rx_bytes (${size} B frames)`);
    assert.ok(counts.txPackets >= frames, `testpmd TX-packets ${counts.txPackets} >= ${frames}`);
  }, jumbo);
}
