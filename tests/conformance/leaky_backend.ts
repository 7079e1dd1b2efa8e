/**
 * A backend whose cleanup leaves a file open and a timer running, with the registry's
 * sanitizers on: run by sanitizers_test.ts, whose cases must then fail with "Leaks detected".
 * Not a `_test.ts` file, so `deno test tests/` does not run it on its own.
 *
 * @module
 */
import { openStore } from "../../src/backends/open.ts";
import type { Backend } from "./backends.ts";
import { blobServiceSuite } from "./blob.ts";

const leaky: Backend = {
  name: "leaky",
  sanitize: { resources: true, ops: true },
  async open() {
    const store = await openStore("memory://");
    const file = await Deno.open(Deno.execPath());
    const timer = setTimeout(() => {}, 60_000);
    return {
      ...store,
      cleanup: async () => {
        await store.close();
        if (Deno.env.get("LEAK") === "none") {
          file.close();
          clearTimeout(timer);
        } else if (Deno.env.get("LEAK") === "file") clearTimeout(timer);
        else file.close();
      },
    };
  },
};

blobServiceSuite(leaky);
