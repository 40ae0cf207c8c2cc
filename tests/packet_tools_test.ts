/**
 * The packet tools with real peers, exact counts and bytes, no timing assertions:
 *
 * ```
 *   sink --capture ◄── built-in source               tshark: frame count, fields, checksums Good
 *   pktgen --pcap ──► built-in sink (hook)            every frame of the file, byte-identical
 *   pktgen --pcap ──► testpmd rxonly                  RX-packets and RX-bytes of the file
 *   pktgen --flows --vlan ──► testpmd io ──► sink --capture ──► tshark: flows, VLAN, Good
 *   pktgen --latency ──► testpmd io ──► back          no loss; histogram count == probes sent
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { PcapWriter, readPcap } from "../lib/packet/pcap.ts";
import { PacketTemplate } from "../lib/packet/template.ts";
import { runBounded } from "./helpers.ts";
import { buildSamples } from "./packet_samples.ts";
import { requireTestpmd, requireTshark } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";
import { tsharkFields } from "./tshark.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
const RUN_TIMEOUT_MS = 60_000;
const noTshark = requireTshark();
const noTestpmd = requireTestpmd(1);

interface Run {
  code: number;
  stderr: string;
  report: Record<string, unknown>;
}

/** `deno run -A examples/<name>.ts ...args`; its last stdout line parsed as JSON. */
async function example(name: string, args: string[]): Promise<Run> {
  const run = await runBounded(Deno.execPath(), ["run", "-A", `examples/${name}.ts`, ...args], {
    cwd: ROOT,
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const what = `examples/${name}.ts ${args.join(" ")}`;
  if (run.timedOut) throw new Error(`${what} did not finish\nstderr:\n${run.stderr}`);
  const last = run.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return { code: run.code, stderr: run.stderr, report: JSON.parse(last) };
  } catch {
    throw new Error(`${what} exited ${run.code} without JSON\n${run.stdout}\n${run.stderr}`);
  }
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "packet-tools-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * pktgen on port 0 of testpmd `io` between two vhost-user ports, `consumer` (an example) on
 * port 1, connected before forwarding starts; both runs' results.
 */
async function throughTwoPorts(
  dir: string,
  consumer: string,
  consumerArgs: string[],
  pktgenArgs: string[],
): Promise<{ gen: Run; got: Run }> {
  const a = `${dir}/a.sock`, b = `${dir}/b.sock`;
  await using tp = await Testpmd.start({
    vdev: `net_vhost0,iface=${a},queues=1`,
    extraEalArgs: ["--vdev", `net_vhost1,iface=${b},queues=1`],
    removeFiles: [b],
    forwardMode: "io",
  });
  await tp.waitForSocket(a);
  await tp.waitForSocket(b);
  const running = example(consumer, ["--path", b, ...consumerArgs]);
  let finished = false;
  running.finally(() => finished = true).catch(() => {});
  // The consumer has filled its receive ring once port 1's link is up: only then forward.
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  while (!finished && Date.now() < deadline && !(await tp.linkUp(1))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await tp.startForwarding();
  const gen = await example("pktgen", ["--path", a, ...pktgenArgs]);
  return { gen, got: await running };
}

/** A capture of varied frames: the samples, then template frames of many sizes. */
function writeReplayFile(path: string): Uint8Array[] {
  const frames = buildSamples().map((s) => s.frame);
  const t = new PacketTemplate({ vlan: 5 });
  for (let k = 0; k < 200; k++) {
    const size = 60 + ((k * 37) % 1455);
    const f = new Uint8Array(t.maxSize);
    t.write(f, 0, size);
    t.patch16(f, 0, t.fieldOffset("src-port"), k);
    frames.push(f.slice(0, size));
  }
  using w = PcapWriter.create(path);
  frames.forEach((f, i) => w.write(f, 0, f.length, 1_700_000_000, i * 1000));
  return frames;
}

Deno.test({
  name: "sink --capture <- built-in source: tshark reads every frame, checksums Good",
  ignore: noTshark,
  async fn() {
    await withDir(async (dir) => {
      const file = `${dir}/sink.pcap`;
      const run = await example("sink", ["--count", "500", "--check", "--capture", file, "--json"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.report.rx_packets, 500);
      assert.equal(run.report.captured, 500);
      assert.equal(run.report.bad_ip_checksum, 0);
      assert.equal(run.report.bad_l4_checksum, 0);
      assert.equal(readPcap(Deno.readFileSync(file)).count, 500);
      const fields = ["frame.len", "ip.src", "ip.dst", "udp.srcport", "ip.checksum.status"];
      const rows = await tsharkFields(file, fields);
      assert.equal(rows.length, 500);
      for (const r of rows) assert.deepEqual(r, ["64", "198.18.0.1", "198.18.0.2", "9", "1"]);
    });
  },
});

for (const timing of ["--rate", "--pcap-timing"]) {
  Deno.test(`pktgen --pcap ${timing} -> built-in device: the file's frames, byte-identical`, async () => {
    await withDir(async (dir) => {
      const file = `${dir}/replay.pcap`;
      const frames = writeReplayFile(file);
      await using device = await DeviceThread.start({
        mode: "sink",
        hook: new URL("./fixtures/frames_hook.ts", import.meta.url).href,
      });
      // The file's frames are 1 µs apart, so its own timing replays them quickly too.
      const pace = timing === "--rate" ? ["--rate", "50k"] : ["--pcap-timing"];
      const run = await example("pktgen", [
        ...["--path", device.path, "--pcap", file, "--loops", "2", "--json", ...pace],
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.report.tx_packets, 2 * frames.length);
      const { hookResult, errors } = await device.stop();
      assert.deepEqual(errors, []);
      const seen = hookResult as Uint8Array[];
      assert.equal(seen.length, 2 * frames.length, "frames the device saw");
      seen.forEach((f, i) => assert.deepEqual(f, frames[i % frames.length], `frame ${i}`));
    });
  });
}

Deno.test({
  name: "pktgen --pcap -> testpmd io -> sink --capture: the capture is the file, byte-identical",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const file = `${dir}/replay.pcap`, out = `${dir}/out.pcap`;
      const frames = writeReplayFile(file);
      const { gen, got } = await throughTwoPorts(
        dir,
        "sink",
        ["--count", String(frames.length), "--capture", out, "--json"],
        ["--pcap", file, "--rate", "20k", "--json"],
      );
      assert.equal(gen.code, 0, gen.stderr);
      assert.equal(got.code, 0, got.stderr);
      const cap = readPcap(Deno.readFileSync(out));
      assert.equal(cap.count, frames.length, "frames captured");
      frames.forEach((f, i) => {
        const at = cap.offsets[i];
        assert.deepEqual(cap.data.subarray(at, at + cap.lengths[i]), f, `frame ${i}`);
      });
    });
  },
});

Deno.test({
  name: "pktgen --pcap -> testpmd rxonly: RX-packets and RX-bytes are the file's",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const file = `${dir}/replay.pcap`;
      const frames = writeReplayFile(file);
      const sock = `${dir}/vhost.sock`;
      await using tp = await Testpmd.start({
        vdev: `net_vhost0,iface=${sock},queues=1`,
        forwardMode: "rxonly",
      });
      await tp.waitForSocket(sock);
      await tp.startForwarding();
      const run = await example("pktgen", ["--path", sock, "--pcap", file, "--json"]);
      assert.equal(run.code, 0, run.stderr);
      const port = await tp.stats(0);
      await tp.stopForwarding();
      assert.equal(port.rxPackets, frames.length, "testpmd RX-packets");
      assert.equal(port.rxBytes, frames.reduce((a, f) => a + f.length, 0), "testpmd RX-bytes");
    });
  },
});

/** A pktgen traffic shape and the tshark fields of its frame `k`. */
interface FlowCase {
  what: string;
  args: string[];
  fields: string[];
  expect: (k: number) => string[];
}

const FLOW_CASES: FlowCase[] = [
  {
    what: "IPv4/UDP, VLAN, 4 flows over src-ip and dst-port, sizes 64-128, numbered",
    args: [
      ...["--flows", "4", "--flow-field", "src-ip,dst-port", "--vlan", "100"],
      ...["--size", "64-128", "--seq"],
    ],
    fields: [
      "frame.len",
      "vlan.id",
      "ip.src",
      "udp.dstport",
      "ip.checksum.status",
      "udp.checksum.status",
    ],
    expect: (
      k,
    ) => [String(64 + (k % 65)), "100", `198.18.0.${1 + (k % 4)}`, String(9 + (k % 4)), "1", "1"],
  },
  {
    what: "IPv6/TCP, 8 flows over dst-ip and src-port, IMIX",
    args: [
      ...["--ipv6", "--tcp", "--flows", "8", "--flow-field", "dst-ip,src-port"],
      ...["--imix", "80:1,590:1,1514:1", "--dst-ip", "2001:db8::100"],
    ],
    fields: ["ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.checksum.status"],
    expect: (
      k,
    ) => ["2001:db8::1", `2001:db8::${(0x100 + (k % 8)).toString(16)}`, String(9 + (k % 8)), "1"],
  },
];

for (const c of FLOW_CASES) {
  Deno.test({
    name: `pktgen ${c.what} -> testpmd io -> sink --capture: tshark sees each flow, Good`,
    ignore: noTestpmd || noTshark,
    async fn() {
      await withDir(async (dir) => {
        const file = `${dir}/flows.pcap`;
        const N = 64;
        const { gen, got } = await throughTwoPorts(
          dir,
          "sink",
          ["--count", String(N), "--capture", file, "--check", "--json"],
          ["--count", String(N), ...c.args, "--rate", "20k", "--json"],
        );
        assert.equal(gen.code, 0, gen.stderr);
        assert.equal(got.code, 0, got.stderr);
        assert.equal(got.report.rx_packets, N);
        assert.equal(got.report.bad_ip_checksum, 0);
        assert.equal(got.report.bad_l4_checksum, 0);
        if (c.args.includes("--seq")) {
          assert.equal(got.report.probes_received, N, "numbered frames");
          assert.equal(got.report.probes_lost, 0);
          assert.equal(got.report.reordered, 0);
          assert.equal(got.report.duplicated, 0);
        }
        const rows = await tsharkFields(file, c.fields);
        assert.equal(rows.length, N, "tshark frame count");
        rows.forEach((r, k) => assert.deepEqual(r, c.expect(k), `frame ${k}`));
      });
    },
  });
}

/** testpmd net_vhost on `sock`, forwarding in io mode (frames go back where they came from). */
async function testpmdIo(sock: string): Promise<Testpmd> {
  const tp = await Testpmd.start({ vdev: `net_vhost0,iface=${sock},queues=1`, forwardMode: "io" });
  try {
    await tp.waitForSocket(sock);
    await tp.startForwarding();
    return tp;
  } catch (e) {
    await tp[Symbol.asyncDispose]();
    throw e;
  }
}

Deno.test({
  name: "pktgen --latency -> testpmd io: no probe lost, histogram count == probes sent",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const sock = `${dir}/vhost.sock`, csv = `${dir}/latency.csv`, svg = `${dir}/latency.svg`;
      await using tp = await testpmdIo(sock);
      const run = await example("pktgen", [
        ...["--path", sock, "--latency", "--count", "2000", "--rate", "2k"],
        ...["--latency-rate", "1000", "--queue-size", "1024", "--histogram", csv, "--plot", svg],
        "--json",
      ]);
      assert.equal(run.code, 0, run.stderr);
      const counts = await tp.stopForwarding();
      const r = run.report;
      console.log(`  latency: ${JSON.stringify(r.latency_us)}, probes ${r.probes_sent}`);
      assert.equal(r.tx_packets, 2000);
      assert.equal(counts.rxPackets, 2000, "testpmd received every frame");
      assert.equal(counts.txDropped, 0, "testpmd sent every frame back");
      assert.equal(r.rx_packets, 2000, "pktgen received every frame back");
      assert.ok((r.probes_sent as number) > 0);
      assert.equal(r.probes_received, r.probes_sent);
      assert.equal(r.lost, 0);
      assert.equal(r.duplicated, 0);
      assert.equal(r.reordered, 0);
      const rows = Deno.readTextFileSync(csv).trim().split("\n").slice(1);
      const total = rows.reduce((a, l) => a + Number(l.split(",")[1]), 0);
      assert.equal(total, r.probes_sent, "histogram count");
      assert.equal((r.latency_us as Record<string, number>).count, r.probes_sent);
      assert.match(Deno.readTextFileSync(svg), /^<svg[\s\S]*<\/svg>\n$/);
    });
  },
});

Deno.test({
  name: "pktgen --latency-warmup -> testpmd io: warm-up probes counted, not measured",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const sock = `${dir}/vhost.sock`, csv = `${dir}/latency.csv`;
      await using tp = await testpmdIo(sock);
      // 3000 frames at 3 kpps: a second of probes at 1000/s, the first half of it warm-up.
      const run = await example("pktgen", [
        ...["--path", sock, "--latency", "--count", "3000", "--rate", "3k"],
        ...["--latency-rate", "1000", "--latency-warmup", "500", "--histogram", csv, "--json"],
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal((await tp.stopForwarding()).rxPackets, 3000, "testpmd received every frame");
      const r = run.report, measured = (r.latency_us as Record<string, number>).count;
      console.log(`  probes ${r.probes_sent}: ${r.probes_warmup} warm-up, ${measured} measured`);
      assert.equal(r.rx_packets, 3000);
      assert.equal(r.probes_received, r.probes_sent);
      assert.equal(r.lost, 0);
      assert.ok((r.probes_warmup as number) > 0, "some probes fell in the warm-up");
      assert.ok(measured > 0, "some probes were measured");
      assert.equal(measured + (r.probes_warmup as number), r.probes_sent);
      const rows = Deno.readTextFileSync(csv).trim().split("\n").slice(1);
      const total = rows.reduce((a, l) => a + Number(l.split(",")[1]), 0);
      assert.equal(total, measured, "the histogram holds only the measured probes");
    });
  },
});

Deno.test("l2fwd.ts between two built-in devices: every frame of the source reaches the sink", async () => {
  await using source = await DeviceThread.start({ mode: "source", count: 5000, frameSize: 128 });
  await using sinkDevice = await DeviceThread.start({ mode: "sink" });
  const run = await example("l2fwd", [
    ...["--port0", source.path, "--port1", sinkDevice.path, "--count", "5000", "--json"],
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.report.forwarded_0_to_1, 5000);
  assert.equal(run.report.dropped_0_to_1, 0);
  const { stats } = await sinkDevice.stop();
  assert.equal(stats.fromDriverPackets, 5000);
  assert.equal(stats.fromDriverBytes, 5000 * 128);
});

Deno.test({
  name: "pktgen --latency -> testpmd io -> echo.ts --mac-swap -> back: every probe returns",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const { gen, got: back } = await throughTwoPorts(
        dir,
        "echo",
        ["--count", "500", "--mac-swap", "--queue-size", "1024", "--json"],
        ["--latency", "--count", "500", "--rate", "1k", "--queue-size", "1024", "--json"],
      );
      assert.equal(gen.code, 0, gen.stderr);
      assert.equal(back.code, 0, back.stderr);
      assert.equal(back.report.rx_packets, 500);
      assert.equal(back.report.tx_packets, 500);
      assert.equal(gen.report.rx_packets, 500);
      assert.equal(gen.report.lost, 0);
      assert.equal(gen.report.probes_received, gen.report.probes_sent);
    });
  },
});

Deno.test("examples: a bad option or a missing peer is one line and a meaningful exit code", async () => {
  const cases: [string, string[], number, RegExp][] = [
    ["pktgen", ["--rate", "fast"], 2, /^pktgen: bad rate "fast"/],
    ["pktgen", ["--imix", "60:x"], 2, /^pktgen: --imix: expected SIZE:WEIGHT/],
    ["pktgen", ["--path", "/nonexistent/x.sock", "--count", "1"], 1, /^pktgen: connect/],
    ["sink", ["--path", "/nonexistent/x.sock", "--count", "1"], 1, /^sink: connect/],
    ["echo", [], 2, /^echo: --path is required/],
    ["l2fwd", ["--port0", "/nonexistent/a.sock", "--port1", "/x"], 1, /^l2fwd: connect/],
  ];
  for (const [name, args, code, message] of cases) {
    const run = await runBounded(Deno.execPath(), ["run", "-A", `examples/${name}.ts`, ...args], {
      cwd: ROOT,
      timeoutMs: RUN_TIMEOUT_MS,
    });
    assert.equal(run.code, code, `${name} ${args.join(" ")}: exit code; stderr:\n${run.stderr}`);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${name} ${args.join(" ")}: one line, got:\n${run.stderr}`);
    assert.match(lines[0], message);
  }
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`pktgen stops on ${signal} with its summary and exit ${code}`, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "examples/pktgen.ts", "--rate", "10k", "--duration", "120"],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    try {
      // The first per-second line comes once the signal listeners are installed.
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let err = "";
      while (!/\d s {2}tx /.test(err)) {
        const { value, done } = await reader.read();
        if (done) break;
        err += value;
      }
      child.kill(signal);
      reader.releaseLock();
      const out = await new Response(child.stdout).text();
      const status = await child.status;
      assert.equal(status.code, code, `exit code; stderr so far:\n${err}`);
      assert.match(out, new RegExp(`^total: tx \\d+ packets.*ended by ${signal}$`, "m"));
    } finally {
      clearTimeout(timer);
      await child.stderr.cancel().catch(() => {});
    }
  });
}

Deno.test({
  name: "pktgen whose peer dies mid-run: its summary, one line, exit 1",
  ignore: noTestpmd,
  async fn() {
    await withDir(async (dir) => {
      const sock = `${dir}/vhost.sock`;
      const tp = await Testpmd.start({
        vdev: `net_vhost0,iface=${sock},queues=1`,
        forwardMode: "rxonly",
      });
      try {
        await tp.waitForSocket(sock);
        await tp.startForwarding();
        const running = example("pktgen", [
          "--path",
          sock,
          "--rate",
          "10k",
          "--duration",
          "5",
          "--json",
        ]);
        await tp.waitForLinkUp(RUN_TIMEOUT_MS);
        await tp.stop();
        const run = await running;
        assert.equal(run.code, 1, run.stderr);
        assert.equal(typeof run.report.tx_packets, "number", "the summary is printed");
        const lines = run.stderr.trim().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], /^pktgen: the peer is gone/);
      } finally {
        await tp.stop();
      }
    });
  },
});
