/**
 * Runs the vhost-net tests (`tests/kernel/*_test.ts`) inside a Linux kernel that has vhost-net:
 * Debian's kernel under QEMU (TCG), with the vhost, tun and tap modules, busybox, the deno binary
 * running this file and the project's files packed into the initramfs by `qemu.ts`. The guest
 * runs `deno test --reporter=tap` offline and powers off; each inner test becomes a step here.
 *
 * ```
 *   host: initramfs = /init + busybox + *.ko + deno (+ libs, cached) + project
 *     ──► qemu-system-x86_64 -m 2048 -smp 2 (no NIC) ──► guest: deno test tests/kernel/
 *     serial console: "ok N - name" / "not ok N - name", "1..N", "VM-EXIT <code>" ──► steps
 * ```
 *
 * Needs `qemu-system-x86_64` and the guest from `.ci/qemu.sh` (with vhost_net.ko).
 *
 * @module
 */

import assert from "node:assert/strict";
import { requirePeer } from "./peers.ts";
import {
  buildInitramfs,
  cpioNewc,
  hostFileEntries,
  projectEntries,
  QEMU_INSTALL,
  qemuPath,
  runQemu,
  sharedLibraries,
  vmAssets,
  vmDir,
} from "./qemu.ts";

const qemu = qemuPath();
const assets = vmAssets();
const ignore = requirePeer(
  assets === null || qemu === null
    ? "qemu-system-x86_64 and the guest kernel/busybox of .ci/qemu.sh"
    : `vhost_net.ko in ${vmDir()}/modules (a cache from an older .ci/qemu.sh)`,
  qemu !== null && assets !== null && assets.modules.some((m) => m.endsWith("/vhost_net.ko")),
  QEMU_INSTALL,
);

/** The guest is killed after this long (the whole run takes a few minutes under TCG). */
const VM_TIMEOUT_MS = 360_000;
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** What the guest needs of the project: the library, the examples, the kernel tests. */
const PROJECT = [
  "deno.json",
  "mod.ts",
  "ffi",
  "lib",
  "examples",
  "tests/helpers.ts",
  "tests/peers.ts",
  "tests/kernel",
];

/**
 * The deno binary and its shared libraries as a cpio archive, cached in the VM dir under a key of
 * the binary's path, size and mtime (building it reads ~100 MB).
 */
async function denoArchive(): Promise<Uint8Array> {
  const deno = Deno.realPathSync(Deno.execPath());
  const st = Deno.statSync(deno);
  const key = `${deno} ${st.size} ${st.mtime?.getTime()}\n`;
  const cache = `${vmDir()}/deno-initramfs.cpio`;
  try {
    if (Deno.readTextFileSync(`${cache}.key`) === key) return await Deno.readFile(cache);
  } catch { /* not cached yet */ }
  const entries = await hostFileEntries(await sharedLibraries(deno));
  entries.push({ name: "bin/deno", data: await Deno.readFile(deno), mode: 0o755 });
  const archive = cpioNewc(entries);
  try {
    await Deno.writeFile(`${cache}.tmp`, archive);
    await Deno.rename(`${cache}.tmp`, cache);
    await Deno.writeTextFile(`${cache}.key`, key);
  } catch { /* a read-only cache: build it again next time */ }
  return archive;
}

/** The guest's script: run the kernel tests offline, report, power off. */
const GUEST_SCRIPT = `
ip link set lo up
export HOME=/tmp DENO_DIR=/tmp/deno-dir NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
export VM_REPORT=/tmp/report.txt
cd /project
echo VM-TESTS-BEGIN
/bin/deno test -A --no-check --reporter=tap tests/kernel/
code=$?
sed 's/^/VM-REPORT /' /tmp/report.txt 2>/dev/null
echo "VM-EXIT $code"
poweroff -f
`;

/** One inner test's result from the TAP stream. */
interface InnerResult {
  ok: boolean;
  name: string;
  skipped: boolean;
}

function parseTap(output: string): { results: InnerResult[]; planned: number; exit: number } {
  const results: InnerResult[] = [];
  let planned = -1, exit = -1;
  for (const raw of output.split("\n")) {
    const line = raw.replace(/\r$/, "");
    const m = /^(not ok|ok) \d+ - (.*?)(\s+# SKIP.*)?$/.exec(line);
    if (m) results.push({ ok: m[1] === "ok", name: m[2], skipped: m[3] !== undefined });
    const plan = /^1\.\.(\d+)$/.exec(line);
    if (plan) planned = Number(plan[1]);
    const e = /^VM-EXIT (\d+)$/.exec(line);
    if (e) exit = Number(e[1]);
  }
  return { results, planned, exit };
}

Deno.test({
  name: "Linux vhost-net inside a VM: every tests/kernel test passes",
  ignore,
  sanitizeOps: false,
  async fn(t) {
    const started = performance.now();
    const dir = await Deno.makeTempDir({ prefix: "virtio-kernel-vm-" });
    try {
      const project = await projectEntries(ROOT, PROJECT, "project");
      // The guest's deno.json: the repository's own excludes tests/kernel from the host's run.
      const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
      delete config.test;
      const json = new TextEncoder().encode(JSON.stringify(config));
      const image = await buildInitramfs(assets!, GUEST_SCRIPT, [
        ...project.filter((e) => e.name !== "project/deno.json"),
        { name: "project/deno.json", data: json },
      ]);
      // The kernel unpacks concatenated archives in order (Documentation/driver-api/early-userspace).
      const initrd = `${dir}/initramfs.cpio`;
      const file = await Deno.open(initrd, { write: true, create: true });
      try {
        for (const part of [image, await denoArchive()]) {
          for (let off = 0; off < part.length;) off += await file.write(part.subarray(off));
        }
      } finally {
        file.close();
      }
      const run = await runQemu({
        qemu: qemu!,
        kernel: assets!.kernel,
        initrd,
        memMb: 2048,
        smp: 2,
        cpu: "max",
        ipv6: "per-interface", // the offload test enables it on its two taps
        timeoutMs: VM_TIMEOUT_MS,
      });
      const { results, planned, exit } = parseTap(run.output);
      const context = `guest output (${(run.ms / 1000).toFixed(0)} s):\n${run.output}`;
      for (const line of run.output.split("\n")) {
        if (line.startsWith("VM-REPORT ")) console.log(line.slice(10).trim());
      }
      for (const r of results) {
        await t.step({
          name: r.name,
          ignore: r.skipped,
          fn() {
            assert.ok(r.ok, `${r.name} failed inside the VM; ${context}`);
          },
        });
      }
      assert.ok(!run.timedOut, `the VM did not finish within ${VM_TIMEOUT_MS} ms; ${context}`);
      assert.ok(!run.output.includes("VM-ERROR"), context);
      assert.ok(
        planned > 0 && results.length === planned,
        `${results.length} of ${planned} results; ${context}`,
      );
      assert.equal(
        results.filter((r) => r.skipped).length,
        0,
        `no inner test may skip; ${context}`,
      );
      assert.equal(exit, 0, `deno test exited ${exit} inside the VM; ${context}`);
      console.log(
        `kernel VM: ${results.length} tests passed; QEMU ${(run.ms / 1000).toFixed(1)} s, ` +
          `harness ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
