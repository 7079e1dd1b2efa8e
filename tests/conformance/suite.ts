/**
 * What the conformance suites share: registering a case that opens a fresh service, runs, and
 * cleans up whatever happens.
 *
 * @module
 */

/** A freshly opened service (or services) with its cleanup. */
export interface Opened {
  /** Closes the service and removes what it made. */
  cleanup: () => Promise<void>;
}

/**
 * Returns `test(name, fn)` registering `Deno.test`s named `<prefix>: <name>`; each opens a
 * fresh service with `open`, passes `pick(opened)` to `fn`, and always cleans up.
 */
export function suiteTest<O extends Opened, T>(
  prefix: string,
  open: () => Promise<O>,
  pick: (opened: O) => T,
  ignore: boolean,
): (name: string, fn: (t: T) => Promise<void>) => void {
  return (name, fn) =>
    Deno.test({
      name: `${prefix}: ${name}`,
      ignore,
      sanitizeResources: false,
      sanitizeOps: false,
      async fn() {
        const opened = await open();
        try {
          await fn(pick(opened));
        } finally {
          await opened.cleanup();
        }
      },
    });
}
