/**
 * Preloaded into an example by gc_steady_state_test.ts (`deno run --preload`, with
 * `--v8-flags=--expose-gc`): on SIGUSR2, which the test sends once start-up is over, it collects
 * everything (a full GC, young generation emptied) and prints {@linkcode STEADY_STATE_MARKER}.
 * From that line on, the run must not collect again. The listener does not keep the program
 * alive; signals reach it on the example's event-loop turns.
 *
 * @module
 */

/** The line printed right after the collection. */
export const STEADY_STATE_MARKER = "gc-test: start-up collected; steady state from here";

const gc = (globalThis as { gc?: () => void }).gc;
// Only where the test asked for it (--expose-gc), not in the test that imports the marker.
if (gc !== undefined) {
  Deno.addSignalListener("SIGUSR2", () => {
    gc();
    console.error(STEADY_STATE_MARKER);
  });
}
