/**
 * Test helper: DPDK's vhost PMD in dpdk-testpmd and a {@linkcode VirtioNet} connected to it,
 * both torn down whatever the body does.
 *
 * ```
 *   withTestpmdPort: testpmd --vdev net_vhost0,iface=<tmp>/vhost.sock ◄──vhost-user── VirtioNet
 *                    link up ──► body(tp, port) ──► port.close() ──► tp.stop() ──► rm <tmp>
 * ```
 *
 * @module
 */

import { VirtioNet, type VirtioNetOptions } from "../lib/driver/virtio_net.ts";
import { Testpmd, type TestpmdOptions } from "./testpmd.ts";

/**
 * testpmd options without the vdev, which the helper builds (`queues` vhost queue pairs, more
 * `net_vhost0` devargs in `vdevArgs`, e.g. `tso=1`).
 */
export type VhostPortOptions = Omit<TestpmdOptions, "vdev"> & {
  queues?: number;
  vdevArgs?: string;
};

/**
 * Starts testpmd with a vhost port, opens a VirtioNet on it with `open`, waits for link up and
 * runs `body`; then closes the port, stops testpmd and removes the socket directory.
 *
 * @example
 * ```ts ignore
 * await withTestpmdPort({ forwardMode: "rxonly" }, { packed: true }, async (tp, port) => {});
 * ```
 */
export async function withTestpmdPort(
  testpmd: VhostPortOptions,
  open: Partial<VirtioNetOptions>,
  body: (tp: Testpmd, port: VirtioNet) => Promise<void>,
): Promise<void> {
  const { queues, vdevArgs, ...rest } = testpmd;
  const dir = await Deno.makeTempDir({ prefix: "vhost-port-" });
  const sock = `${dir}/vhost.sock`;
  try {
    await using tp = await Testpmd.start({
      vdev: `net_vhost0,iface=${sock},queues=${queues ?? 1}${vdevArgs ? `,${vdevArgs}` : ""}`,
      ...rest,
    });
    await tp.waitForSocket(sock);
    const port = VirtioNet.open({ path: sock, ...open });
    try {
      await tp.waitForLinkUp();
      await body(tp, port);
    } finally {
      port.close();
    }
    await tp.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
