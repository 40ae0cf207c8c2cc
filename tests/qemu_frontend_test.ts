/**
 * QEMU as the vhost-user frontend of the TypeScript device ({@linkcode DeviceThread}, echo mode
 * with MAC swap): a Linux guest's own virtio-net driver moves frames through split and packed
 * rings in guest memory QEMU shares through a memfd. Counts are exact on both sides:
 *
 * ```
 *   guest: ping -s SIZE ×COUNT ──virtio-net tx──► QEMU ══vhost-user══► device echo (macSwap)
 *   guest: eth0 rx counters   ◄─virtio-net rx───────────────────────────────┘
 *   assert device fromDriverPackets == toDriverPackets == guest tx_packets == guest rx_packets == sent
 *          and the byte counts match the frame sizes exactly
 * ```
 *
 * The guest sends nothing else: IPv6 is off (`ipv6.disable=1`: no ND/MLD), the peer's ARP entry
 * is static (no ARP), and IPv4 sends no gratuitous ARP or IGMP for the all-hosts group. The echoed
 * requests are addressed to the peer's IP, so the guest (not forwarding) drops them silently.
 *
 * Needs `qemu-system-x86_64` and the guest from `.ci/qemu.sh`; runs under TCG (no KVM).
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { requirePeer } from "./peers.ts";
import { buildInitramfs, QEMU_INSTALL, qemuPath, runQemu, vmAssets } from "./qemu.ts";

const qemu = qemuPath();
const assets = vmAssets();
const ignore = requirePeer(
  "qemu-system-x86_64 and the guest kernel/busybox of .ci/qemu.sh",
  qemu !== null && assets !== null,
  QEMU_INSTALL,
);

/** ICMP payload sizes the guest pings with: 98, 1042 and 1514-byte frames (MTU 1500). */
const PING_SIZES = [56, 1000, 1472];
/** Echo requests per size. */
const PINGS_PER_SIZE = 50;
const FRAMES = PING_SIZES.length * PINGS_PER_SIZE;
/** Ethernet + IPv4 + ICMP headers around the ping payload. */
const FRAME_OVERHEAD = 14 + 20 + 8;
const FRAME_BYTES = PING_SIZES.reduce((sum, s) => sum + PINGS_PER_SIZE * (s + FRAME_OVERHEAD), 0);
/** QEMU is killed after this long (a boot under TCG takes ~5 s). */
const QEMU_TIMEOUT_MS = 60_000;
const PEER_IP = "10.0.0.2";
const PEER_MAC = "52:54:00:00:00:02";
/** Bit 34 of the driver features the guest shows in sysfs. */
const F_RING_PACKED = 34;

/** The guest's script: bring eth0 up, ping, wait for every echo, report the counters. */
const GUEST_SCRIPT = `
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
ip addr add 10.0.0.1/24 dev eth0 || echo "VM-ERROR ip addr"
arp -i eth0 -s ${PEER_IP} ${PEER_MAC} || echo "VM-ERROR arp"
ip link set eth0 up || echo "VM-ERROR link up"
s=/sys/class/net/eth0/statistics
echo "VM-BEFORE tx=$(cat $s/tx_packets) rx=$(cat $s/rx_packets)"
for size in ${PING_SIZES.join(" ")}; do
  ping -q -c ${PINGS_PER_SIZE} -i 0.01 -W 1 -s $size ${PEER_IP} >/dev/null
done
i=0
while [ "$(cat $s/rx_packets)" -lt ${FRAMES} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.2
echo "VM-RESULT tx=$(cat $s/tx_packets) rx=$(cat $s/rx_packets) tx_bytes=$(cat $s/tx_bytes) rx_bytes=$(cat $s/rx_bytes) rx_dropped=$(cat $s/rx_dropped)"
echo "VM-FEATURES $(cat /sys/class/net/eth0/device/features)"
echo VM-DONE
poweroff -f
`;

for (const packed of [false, true]) {
  const layout = packed ? "packed" : "split";
  Deno.test({
    name: `QEMU guest virtio-net (${layout} ring) ⇄ TS device echo: exact counts both ways`,
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "virtio-qemu-" });
      await using device = await DeviceThread.start({ mode: "echo", macSwap: true });
      try {
        const initrd = `${dir}/initramfs.cpio`;
        await Deno.writeFile(initrd, await buildInitramfs(assets!, GUEST_SCRIPT));
        const run = await runQemu({
          qemu: qemu!,
          kernel: assets!.kernel,
          initrd,
          socket: device.path,
          packed,
          timeoutMs: QEMU_TIMEOUT_MS,
        });
        const { stats, errors } = await device.stop();
        const context = `QEMU (${run.ms.toFixed(0)} ms, exit ${run.code}) output:\n${run.output}`;
        assert.ok(!run.timedOut, `QEMU did not finish within ${QEMU_TIMEOUT_MS} ms; ${context}`);
        assert.equal(run.code, 0, context);
        assert.ok(!run.output.includes("VM-ERROR"), context);
        assert.ok(run.output.includes("VM-DONE"), context);
        assert.match(run.output, /VM-BEFORE tx=0 rx=0/, context);

        const result = /VM-RESULT tx=(\d+) rx=(\d+) tx_bytes=(\d+) rx_bytes=(\d+) rx_dropped=(\d+)/
          .exec(run.output);
        assert.ok(result, context);
        const [guestTx, guestRx, guestTxBytes, guestRxBytes, guestDropped] = result.slice(1).map(
          Number,
        );
        const features = /VM-FEATURES ([01]+)/.exec(run.output);
        assert.ok(features, context);
        assert.equal(features[1][F_RING_PACKED] === "1", packed, `negotiated ring; ${context}`);

        console.log(
          `${layout}: QEMU ran ${(run.ms / 1000).toFixed(1)} s; guest tx ${guestTx} rx ${guestRx}` +
            ` (${guestTxBytes}/${guestRxBytes} B); device rx ${stats.fromDriverPackets} tx ` +
            `${stats.toDriverPackets} (${stats.fromDriverBytes}/${stats.toDriverBytes} B), dropped ${stats.toDriverDropped}`,
        );
        assert.deepEqual(errors, []);
        assert.equal(guestTx, FRAMES, `guest sent; ${context}`);
        assert.equal(stats.fromDriverPackets, FRAMES, "device took every frame the guest sent");
        assert.equal(stats.fromDriverBytes, FRAME_BYTES);
        assert.equal(stats.toDriverPackets, FRAMES, "device echoed every frame");
        assert.equal(stats.toDriverBytes, FRAME_BYTES);
        assert.equal(stats.toDriverDropped, 0);
        assert.equal(guestRx, FRAMES, `guest received every echo; ${context}`);
        assert.equal(guestTxBytes, FRAME_BYTES);
        assert.equal(guestRxBytes, FRAME_BYTES);
        assert.equal(guestDropped, 0);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
