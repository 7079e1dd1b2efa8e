/**
 * Loading a system library for a codec ({@linkcode openLibrary}): the first of several sonames
 * that loads, with an error that says which package provides it when none does.
 *
 * @module
 */

/**
 * The symbols of the first library in `names` that loads. Throws an error naming `what` needs
 * it and the Debian package that provides it when none loads, or asking for `--allow-ffi`
 * without FFI permission.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openLibrary } from "./native.ts";
 * const lib = openLibrary("a test", ["libc.so.6"], "libc6", {
 *   getpid: { parameters: [], result: "i32" },
 * });
 * assert.equal(lib.getpid(), Deno.pid);
 * assert.throws(
 *   () => openLibrary("xyz", ["libnope.so.9"], "libnope9", {}),
 *   /xyz needs libnope\.so\.9 \(Debian package libnope9\)/,
 * );
 * ```
 */
export function openLibrary<S extends Deno.ForeignLibraryInterface>(
  what: string,
  names: readonly string[],
  debianPackage: string,
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  let last: unknown;
  for (const name of names) {
    try {
      return Deno.dlopen(name, symbols).symbols;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw new Deno.errors.NotCapable(
          `${what} calls ${name} through FFI: run deno with --allow-ffi (or -A)`,
          { cause: e },
        );
      }
      last = e;
    }
  }
  const why = last instanceof Error ? last.message : String(last);
  throw new Error(
    `${what} needs ${
      names.join(" or ")
    } (Debian package ${debianPackage}), which did not load: ${why}`,
    { cause: last },
  );
}
