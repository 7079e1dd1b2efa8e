/**
 * What the conformance suites share: registering a case that opens a fresh store of one backend,
 * runs, and cleans up whatever happens.
 *
 * @module
 */
import type { Backend, OpenedStore } from "./backends.ts";

/**
 * Returns `test(name, fn)` registering `Deno.test`s named `<backend> <suite>: <name>`; each
 * opens a fresh store of `backend`, passes `pick(store)` to `fn`, and always cleans up. The
 * backend's sanitizers apply: cleanup is part of the case, so what it leaves open is a leak.
 */
export function suiteTest<T>(
  backend: Backend,
  suite: string,
  pick: (store: OpenedStore) => T,
): (name: string, fn: (t: T) => Promise<void>) => void {
  return (name, fn) =>
    Deno.test({
      name: `${backend.name} ${suite}: ${name}`,
      sanitizeResources: backend.sanitize.resources,
      sanitizeOps: backend.sanitize.ops,
      async fn() {
        const store = await backend.open();
        try {
          await fn(pick(store));
        } finally {
          await store.cleanup();
        }
      },
    });
}
