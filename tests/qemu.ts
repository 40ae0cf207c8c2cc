/**
 * Runs QEMU with a tiny Linux guest: Debian's kernel and modules plus busybox (fetched by
 * `.ci/qemu.sh`), packed at test time into an initramfs (cpio newc, written here, no cpio tool
 * needed). Two uses: QEMU as a vhost-user frontend against a device socket (the guest's
 * virtio-net driver moves frames through the rings), and a guest that runs this project's
 * vhost-net tests under its own kernel (the pinned deno binary and the project files packed in).
 *
 * ```
 *   initramfs: /init (script) + busybox + *.ko [+ deno, its libs, project] ──► qemu (TCG)
 *     guest memory: memfd, share=on ──SET_MEM_TABLE──► device
 *     virtio-net-pci ── -netdev vhost-user ── chardev socket ──► device socket (when given)
 *     serial console (stdout) ──► QemuRun.output
 * ```
 *
 * @module
 */

import { runBounded } from "./helpers.ts";
import { env, isExecutable } from "./peers.ts";

/** Hint printed when the guest or QEMU is missing. */
export const QEMU_INSTALL: string =
  "sudo apt-get install --no-install-recommends qemu-system-x86 && bash .ci/qemu.sh";

/** The guest parts `.ci/qemu.sh` leaves in its cache dir. */
export interface VmAssets {
  /** The kernel image. */
  kernel: string;
  /** A statically linked busybox. */
  busybox: string;
  /** The virtio-net driver modules, in load order. */
  modules: string[];
}

/**
 * The cache dir of `.ci/qemu.sh`: env `VM_DIR`, else `$XDG_CACHE_HOME/virtio-deno/vm`, else
 * `$HOME/.cache/virtio-deno/vm`.
 *
 * @example
 * ```ts
 * import { vmDir } from "./qemu.ts";
 * console.log(vmDir());
 * ```
 */
export function vmDir(): string {
  const override = env("VM_DIR");
  if (override) return override;
  const cache = env("XDG_CACHE_HOME") || `${env("HOME") || "/root"}/.cache`;
  return `${cache}/virtio-deno/vm`;
}

/**
 * The guest parts in {@linkcode vmDir}, or `null` when `.ci/qemu.sh` has not run (or a file is
 * missing).
 *
 * @example
 * ```ts
 * import { vmAssets } from "./qemu.ts";
 * console.log(vmAssets()?.kernel ?? "run bash .ci/qemu.sh");
 * ```
 */
export function vmAssets(): VmAssets | null {
  const dir = vmDir();
  try {
    const order = Deno.readTextFileSync(`${dir}/modules/order`).split("\n").filter((l) => l);
    const assets: VmAssets = {
      kernel: `${dir}/vmlinuz`,
      busybox: `${dir}/busybox`,
      modules: order.map((m) => `${dir}/modules/${m}`),
    };
    for (const f of [assets.kernel, assets.busybox, ...assets.modules]) Deno.statSync(f);
    return assets;
  } catch {
    return null;
  }
}

/**
 * Path of `qemu-system-x86_64`: env `QEMU` when set, else the first on `PATH`, else `null`.
 *
 * @example
 * ```ts
 * import { qemuPath } from "./qemu.ts";
 * console.log(qemuPath() ?? "qemu-system-x86 not installed");
 * ```
 */
export function qemuPath(): string | null {
  const override = env("QEMU");
  if (override) return isExecutable(override) ? override : null;
  for (const dir of (env("PATH") ?? "").split(":")) {
    if (dir !== "" && isExecutable(`${dir}/qemu-system-x86_64`)) return `${dir}/qemu-system-x86_64`;
  }
  return null;
}

/** One file of an initramfs. */
export interface InitramfsEntry {
  /** Path inside the archive, without a leading slash (`bin/busybox`). */
  name: string;
  /** File contents; absent for a directory. */
  data?: Uint8Array;
  /** Permission bits (default 0o755 for directories, 0o644 for files). */
  mode?: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/**
 * An uncompressed initramfs in the kernel's cpio "newc" format (`070701` headers of thirteen
 * 8-digit hex fields, name and data each padded to 4 bytes, ended by `TRAILER!!!`).
 *
 * @example
 * ```ts
 * import { cpioNewc } from "./qemu.ts";
 * const archive = cpioNewc([{ name: "init", data: new TextEncoder().encode("#!/bin/sh\n") }]);
 * console.assert(new TextDecoder().decode(archive.subarray(0, 6)) === "070701");
 * ```
 */
export function cpioNewc(entries: InitramfsEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
    const pad = (4 - (size & 3)) & 3;
    if (pad) {
      parts.push(new Uint8Array(pad));
      size += pad;
    }
  };
  const all = [...entries, { name: "TRAILER!!!", data: new Uint8Array(0), mode: 0 }];
  for (let i = 0; i < all.length; i++) {
    const e = all[i];
    const isDir = e.data === undefined;
    const trailer = i === all.length - 1;
    const mode = trailer ? 0 : (isDir ? S_IFDIR : S_IFREG) | (e.mode ?? (isDir ? 0o755 : 0o644));
    const data = e.data ?? new Uint8Array(0);
    const name = enc.encode(`${e.name}\0`);
    const fields = [trailer ? 0 : i + 1, mode, 0, 0, isDir ? 2 : 1, 0, data.length, 0, 0, 0, 0];
    const hex = fields.map((f) => f.toString(16).padStart(8, "0")).join("");
    // c_namesize counts the NUL; c_check is 0 for newc.
    const header = `070701${hex}${name.length.toString(16).padStart(8, "0")}00000000`;
    push(concat(enc.encode(header), name)); // 110-byte header, then the name
    push(data);
  }
  return concat(...parts);
}

/**
 * Builds the guest's initramfs: busybox at `/bin/busybox`, the modules under `/lib/modules/`,
 * `extra` entries, and `/init` running `script` (a busybox `sh` script; its lines run after
 * busybox installed its applet links and the modules were loaded in order).
 *
 * @example
 * ```ts ignore
 * import { buildInitramfs, vmAssets } from "./qemu.ts";
 * const image = await buildInitramfs(vmAssets()!, "echo hello; poweroff -f");
 * ```
 */
export async function buildInitramfs(
  assets: VmAssets,
  script: string,
  extra: InitramfsEntry[] = [],
): Promise<Uint8Array> {
  const enc = new TextEncoder();
  const moduleNames = assets.modules.map((m) => m.slice(m.lastIndexOf("/") + 1));
  const init = [
    "#!/bin/busybox sh",
    "/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp",
    "/bin/busybox --install -s",
    "mount -t proc proc /proc",
    "mount -t sysfs sysfs /sys",
    "mount -t devtmpfs devtmpfs /dev",
    `for m in ${moduleNames.join(" ")}; do`,
    '  insmod "/lib/modules/$m" || echo "VM-ERROR insmod $m failed"',
    "done",
    script,
    "",
  ].join("\n");
  const entries: InitramfsEntry[] = [
    { name: "bin" },
    { name: "lib" },
    { name: "lib/modules" },
    { name: "bin/busybox", data: await Deno.readFile(assets.busybox), mode: 0o755 },
    { name: "init", data: enc.encode(init), mode: 0o755 },
  ];
  for (let i = 0; i < assets.modules.length; i++) {
    entries.push({
      name: `lib/modules/${moduleNames[i]}`,
      data: await Deno.readFile(assets.modules[i]),
    });
  }
  return cpioNewc([...entries, ...extra]);
}

/**
 * Entries for host files at the same paths inside the guest, with every parent directory
 * before them (absolute `paths`; modes copied).
 *
 * @example
 * ```ts ignore
 * import { hostFileEntries } from "./qemu.ts";
 * const entries = await hostFileEntries(["/bin/true"]);
 * ```
 */
export async function hostFileEntries(paths: string[]): Promise<InitramfsEntry[]> {
  const dirs = new Set<string>();
  const files: InitramfsEntry[] = [];
  for (const path of paths) {
    const parts = path.split("/").filter((p) => p);
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    const st = await Deno.stat(path);
    files.push({ name: parts.join("/"), data: await Deno.readFile(path), mode: st.mode! & 0o777 });
  }
  return [...[...dirs].sort().map((name) => ({ name })), ...files];
}

/**
 * Entries for every file under `root`'s `dirs` (and the single files among them), placed under
 * `prefix` in the guest: `projectEntries(root, ["lib", "mod.ts"], "project")`.
 *
 * @example
 * ```ts ignore
 * import { projectEntries } from "./qemu.ts";
 * const entries = await projectEntries(Deno.cwd(), ["ffi", "lib", "mod.ts"], "project");
 * ```
 */
export async function projectEntries(
  root: string,
  dirs: string[],
  prefix: string,
): Promise<InitramfsEntry[]> {
  const out: InitramfsEntry[] = [{ name: prefix }];
  const walk = async (rel: string) => {
    const st = await Deno.stat(`${root}/${rel}`);
    if (st.isFile) {
      out.push({ name: `${prefix}/${rel}`, data: await Deno.readFile(`${root}/${rel}`) });
      return;
    }
    out.push({ name: `${prefix}/${rel}` });
    const names = [];
    for await (const e of Deno.readDir(`${root}/${rel}`)) names.push(e.name);
    for (const name of names.sort()) await walk(`${rel}/${name}`);
  };
  const parents = new Set<string>();
  for (const d of dirs) {
    const parts = d.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (!parents.has(parent)) out.push({ name: `${prefix}/${parent}` });
      parents.add(parent);
    }
    await walk(d);
  }
  return out;
}

/**
 * The shared libraries `binary` loads (its `ldd` listing, the dynamic loader included), so a
 * guest without a distribution can run it.
 *
 * @example
 * ```ts ignore
 * import { sharedLibraries } from "./qemu.ts";
 * console.log(await sharedLibraries(Deno.execPath()));
 * ```
 */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const run = await runBounded("ldd", [binary], { timeoutMs: 10_000 });
  if (run.code !== 0) throw new Error(`ldd ${binary} failed: ${run.stderr.trim()}`);
  const libs: string[] = [];
  for (const line of run.stdout.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/** Options of {@linkcode runQemu}. */
export interface QemuOptions {
  /** `qemu-system-x86_64`. */
  qemu: string;
  /** Kernel image. */
  kernel: string;
  /** Initramfs file. */
  initrd: string;
  /** The vhost-user device's socket (QEMU connects to it); without it the guest has no NIC. */
  socket?: string;
  /** Offer packed virtqueues (`packed=on`). */
  packed?: boolean;
  /** Guest MAC address (default 52:54:00:12:34:56). */
  mac?: string;
  /** Guest RAM in MB, all of it shared with the device through a memfd (default 256). */
  memMb?: number;
  /** Virtual CPUs (default 1). */
  smp?: number;
  /** `-cpu` model (default QEMU's; `max` gives the guest SSE4/AVX under TCG). */
  cpu?: string;
  /**
   * IPv6 in the guest: `"off"` (default) boots without the stack (`ipv6.disable=1`);
   * `"per-interface"` keeps the stack (Debian builds it in) but starts every interface with IPv6
   * disabled (`ipv6.disable_ipv6=1`), so no interface sends router solicitations or MLD reports
   * until a test writes 0 to its `/proc/sys/net/ipv6/conf/<name>/disable_ipv6`.
   */
  ipv6?: "off" | "per-interface";
  /** Extra kernel command line. */
  append?: string;
  /** QEMU is killed after this long (default 120 s). */
  timeoutMs?: number;
}

/** How a QEMU run ended. */
export interface QemuRun {
  /** Exit code (`null` when it was killed on timeout). */
  code: number | null;
  /** Whether the timeout killed it. */
  timedOut: boolean;
  /** Serial console and QEMU's own messages. */
  output: string;
  /** Wall time in milliseconds. */
  ms: number;
}

/**
 * Boots the guest (with one virtio-net-pci NIC on a vhost-user netdev when `socket` is given)
 * under TCG (no KVM needed), and waits for QEMU to exit (the guest powers off; a panic exits
 * too, since the guest runs with `panic=-1` and QEMU with `-no-reboot`).
 *
 * @example
 * ```ts ignore
 * import { runQemu } from "./qemu.ts";
 * const run = await runQemu({ qemu, kernel, initrd, socket: device.path });
 * console.log(run.output);
 * ```
 */
export async function runQemu(options: QemuOptions): Promise<QemuRun> {
  const mem = options.memMb ?? 256;
  const mac = options.mac ?? "52:54:00:12:34:56";
  const ipv6 = options.ipv6 === "per-interface" ? "ipv6.disable_ipv6=1" : "ipv6.disable=1";
  const append = `console=ttyS0 ${ipv6} panic=-1 quiet ${options.append ?? ""}`.trim();
  const args = [
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-accel",
    "tcg",
    "-m",
    `${mem}M`,
    "-smp",
    `${options.smp ?? 1}`,
    ...(options.cpu ? ["-cpu", options.cpu] : []),
    "-object",
    `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    "-numa",
    "node,memdev=mem",
    ...(options.socket === undefined ? [] : [
      "-chardev",
      `socket,id=c0,path=${options.socket}`,
      "-netdev",
      "vhost-user,id=n0,chardev=c0",
      "-device",
      // vectors=0: no MSI-X, legacy INTx. QEMU 7.2 under TCG segfaults in
      // msix_set_vector_notifiers (from vhost_net_start) when the guest enables MSI-X.
      // romfile=: no iPXE option ROM (the kernel is loaded directly).
      `virtio-net-pci,netdev=n0,mac=${mac},vectors=0,romfile=${options.packed ? ",packed=on" : ""}`,
    ]),
    "-kernel",
    options.kernel,
    "-initrd",
    options.initrd,
    "-append",
    append,
  ];
  const run = await runBounded(options.qemu, args, { timeoutMs: options.timeoutMs ?? 120_000 });
  return {
    code: run.timedOut ? null : run.code,
    timedOut: run.timedOut,
    output: run.stdout + run.stderr,
    ms: run.ms,
  };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
