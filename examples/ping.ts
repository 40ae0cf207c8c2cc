/**
 * ping: answers ARP who-has and ICMP echo requests for one IPv4 address, so a host can ping
 * this process through a vhost-user backend or the kernel's vhost-net and a tap.
 *
 * ```
 *   kernel: ping ADDR ──► tap ══vhost-net══► receiveq ──rxBurst──► answerArp / answerIcmpEcho
 *   kernel: reply     ◄── tap ◄═════════════ transmitq ◄─txBurst── (same buffer, rewritten)
 * ```
 *
 * Exit codes: 0 done (count reached, duration over, or SIGINT/SIGTERM), 1 runtime error (one line
 * on stderr), 2 usage error.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { answerArp, answerIcmpEcho } from "../lib/packet/responder.ts";
import { formatIpv4, parseIpv4 } from "../lib/packet/ipv4.ts";
import { commonOptions, intOption, openPort, parseCli } from "./cli.ts";

const USAGE = `usage: ping.ts --path PATH [--tap NAME] --ip ADDR [--count N | --duration S]

Answers ARP and ICMP echo requests for ADDR on a virtio-net port.

  --path PATH        vhost-user socket of the device, or /dev/vhost-net (the Linux kernel's
                     vhost-net, split rings)
  --tap NAME         with /dev/vhost-net: the tap interface to attach (created when missing);
                     give it an address on ADDR's subnet: ip addr add 10.0.0.1/24 dev NAME;
                     ip link set NAME up
  --ip ADDR          the IPv4 address to answer for, e.g. 10.0.0.2
  --mac MAC          this port's MAC address (default: random, locally administered)
  --count N          exit after answering N echo requests
  --duration S       exit after S seconds (default: run until SIGINT/SIGTERM)
  --split            split rings (vhost-user; vhost-net always uses split rings)
  --queue-size N     descriptors per ring (default 256)
  --hugepages MODE   auto | yes | no (default auto)
  --json             print one final JSON line
  --quiet            no line per answered request`;

const opts = parseCli(
  USAGE,
  () =>
    parseArgs({ options: { ...commonOptions, ip: { type: "string" }, mac: { type: "string" } } })
      .values,
);

function die(message: string, code: number): never {
  console.error(`ping: ${message}`);
  Deno.exit(code);
}

if (opts.path === undefined) die(`--path is required\n\n${USAGE}`, 2);
if (opts.ip === undefined) die(`--ip is required\n\n${USAGE}`, 2);
let ip = 0;
try {
  ip = parseIpv4(opts.ip);
} catch (e) {
  die((e as Error).message, 2);
}
const count = intOption("count", opts.count, 0);
const duration = intOption("duration", opts.duration, 0);

const port = await openPort(opts, null, "ping");
const { pool, mac } = port;
let stop = false;
const onSignal = () => (stop = true);
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

const macText = Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
// The ready line: a script may start pinging once it sees it.
console.log(
  `ping: answering ARP and ICMP echo for ${formatIpv4(ip)} at ${macText} on ${port.transport.name}`,
);

const BURST = 32;
const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST);
const out = new Uint32Array(BURST), outLens = new Uint32Array(BURST);
let arp = 0, echo = 0, ignored = 0, idle = 0;
const deadline = duration > 0 ? performance.now() + duration * 1000 : Infinity;
while (!stop && (count === 0 || echo < count)) {
  const n = port.rxBurst(bufs, lens, BURST);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const at = pool.dataOffset(bufs[i]);
    if (answerArp(pool.bytes, at, lens[i], mac, ip)) arp++;
    else if (answerIcmpEcho(pool.bytes, at, lens[i], mac, ip)) echo++;
    else {
      ignored++;
      pool.free(bufs, i, 1);
      continue;
    }
    out[k] = bufs[i];
    outLens[k++] = lens[i];
  }
  if (k > 0) {
    const sent = port.txBurst(out, outLens, k);
    pool.free(out, sent, k - sent);
    if (!opts.quiet && !opts.json) console.log(`ping: arp ${arp} echo ${echo}`);
  }
  if (n > 0) idle = 0;
  else if (++idle >= 1024) {
    // Idle: yield to timers and signals (and the CPU) for a millisecond.
    idle = 0;
    await new Promise((r) => setTimeout(r, 1));
    if (performance.now() > deadline) break;
  }
}
port.txDrain(1000);
port.close();
Deno.removeSignalListener("SIGINT", onSignal);
Deno.removeSignalListener("SIGTERM", onSignal);
const result = { echo_replies: echo, arp_replies: arp, ignored };
if (opts.json) console.log(JSON.stringify(result));
else {console.log(
    `ping: answered ${echo} echo request(s) and ${arp} ARP request(s); ignored ${ignored}`,
  );}
