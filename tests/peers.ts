/**
 * Detection of the external peers the tests talk to (DPDK's `dpdk-testpmd`, hugepages), and the
 * rule for a missing peer: a loud SKIPPED line on a developer machine, a failure under `CI=true`
 * so continuous integration never passes by skipping.
 *
 * ```
 *   test file ──► requirePeer(name, ok, install) ──► ignore flag for Deno.test
 *                                                └─► throws when CI=true and !ok
 * ```
 *
 * @module
 */

/** Install hint printed when `dpdk-testpmd` is missing. */
export const TESTPMD_INSTALL: string = "sudo apt-get install dpdk-dev";

/** Hint printed when too few 2 MB hugepages are free. */
export const HUGEPAGES_INSTALL: string =
  "sudo sh -c 'echo 1024 > /proc/sys/vm/nr_hugepages' (or run bash .ci/hugepages.sh as root), " +
  "or set TESTPMD_NO_HUGE=1";

/**
 * Whether the run is continuous integration (env `CI` is `true` or `1`), where a missing peer is a
 * failure rather than a skip.
 *
 * @example
 * ```ts
 * if (isCI()) console.log("missing peers fail the run");
 * ```
 */
export function isCI(): boolean {
  const ci = env("CI");
  return ci === "true" || ci === "1";
}

/**
 * Absolute path of `dpdk-testpmd`: env `TESTPMD` when set, else the first executable of that name
 * on `PATH`, else `null`.
 *
 * @example
 * ```ts
 * const bin = testpmdPath();
 * console.log(bin ?? "dpdk-testpmd not installed");
 * ```
 */
export function testpmdPath(): string | null {
  const override = env("TESTPMD");
  if (override) return isExecutable(override) ? override : null;
  return onPath("dpdk-testpmd");
}

/** Install hint printed when `tshark` is missing. */
export const TSHARK_INSTALL: string = "sudo apt-get install tshark";

/**
 * Absolute path of `tshark` (Wireshark's command-line dissector): env `TSHARK` when set, else
 * the first on `PATH`, else `null`.
 *
 * @example
 * ```ts
 * console.log(tsharkPath() ?? "tshark not installed");
 * ```
 */
export function tsharkPath(): string | null {
  const override = env("TSHARK");
  if (override) return isExecutable(override) ? override : null;
  return onPath("tshark");
}

/**
 * {@linkcode requirePeer} for `tshark`.
 *
 * @example
 * ```ts
 * Deno.test({ name: "tshark reads the capture", ignore: requireTshark(), fn() {} });
 * ```
 */
export function requireTshark(): boolean {
  return requirePeer("tshark", tsharkPath() !== null, TSHARK_INSTALL);
}

/** The first executable `name` in a `PATH` directory, or `null`. */
export function onPath(name: string): string | null {
  for (const dir of (env("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    const candidate = `${dir}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

/**
 * Number of free hugepages of the default size (`HugePages_Free` of `/proc/meminfo`), 0 when
 * unreadable.
 *
 * @example
 * ```ts
 * if (hugepagesFree() < 256) console.log("reserve hugepages first");
 * ```
 */
export function hugepagesFree(): number {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/meminfo");
  } catch {
    return 0;
  }
  const m = /^HugePages_Free:\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * Decides whether a test needing peer `name` runs. When `ok`, returns `false` (do not ignore).
 * When not `ok`: under CI (see {@linkcode isCI}) throws an error naming the peer and its install
 * command; elsewhere prints a loud `SKIPPED (...)` line and returns `true`, to be passed as
 * `ignore` to `Deno.test`.
 *
 * @example
 * ```ts
 * const ignore = requirePeer("dpdk-testpmd", testpmdPath() !== null, TESTPMD_INSTALL);
 * Deno.test({ name: "talks to testpmd", ignore, fn() {} });
 * ```
 */
export function requirePeer(name: string, ok: boolean, install: string): boolean {
  if (ok) return false;
  const reason = `${name} not found; install: ${install}`;
  if (isCI()) {
    throw new Error(`peer missing under CI=true: ${reason}`);
  }
  console.error(`SKIPPED (${reason})`);
  return true;
}

/**
 * {@linkcode requirePeer} for `dpdk-testpmd` with enough hugepages for `processes` instances of
 * `memMb` MB each (skipped when env `TESTPMD_NO_HUGE=1`, since then testpmd runs on plain memory).
 *
 * @example
 * ```ts
 * const ignore = requireTestpmd(2);
 * Deno.test({ name: "vhost-user against testpmd", ignore, fn() {} });
 * ```
 */
export function requireTestpmd(processes = 1, memMb = 256): boolean {
  const path = testpmdPath();
  if (!requirePeer("dpdk-testpmd", path !== null, TESTPMD_INSTALL)) {
    if (env("TESTPMD_NO_HUGE") === "1") return false;
    const needed = processes * Math.ceil(memMb / 2);
    const free = hugepagesFree();
    return requirePeer(
      `${needed} free 2 MB hugepages (have ${free})`,
      free >= needed,
      HUGEPAGES_INSTALL,
    );
  }
  return true;
}

/** An environment variable, or undefined when unset or not permitted. */
export function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: behave as unset
  }
}

/** True when `path` is an executable file. */
export function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}
