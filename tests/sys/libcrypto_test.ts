import assert from "node:assert/strict";
import { libcrypto, preloadLibcrypto, SHA256_CTX_SIZE } from "../../src/sys/libcrypto.ts";
const HAVE = (() => {
  if (Deno.build.os !== "linux") return false;
  try {
    Deno.dlopen("libcrypto.so.3", {}).close();
    return true;
  } catch {
    console.warn("skipping the libcrypto test: libcrypto.so.3 missing");
    return false;
  }
})();

Deno.test({
  name: "libcrypto after preloadLibcrypto: SHA-256 on the thread pool",
  ignore: !HAVE,
  fn: async () => {
    preloadLibcrypto();
    const lib = libcrypto();
    assert.ok(lib, "libcrypto.so.3 is installed but did not load");
    assert.equal(libcrypto(), lib); // decided once
    const ctx = new Uint8Array(SHA256_CTX_SIZE);
    const out = new Uint8Array(32);
    assert.equal(lib.SHA256_Init(ctx), 1);
    assert.equal(await lib.SHA256_Update(ctx, new TextEncoder().encode("abc"), 3n), 1);
    assert.equal(await lib.SHA256_Final(out, ctx), 1);
    assert.equal(
      Array.from(out, (x) => x.toString(16).padStart(2, "0")).join(""),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  },
});

Deno.test("NIXCAS_NO_LIBCRYPTO: libcrypto() is null and preloadLibcrypto does nothing", async () => {
  const code = `
    import { libcrypto, preloadLibcrypto } from ${
    JSON.stringify(new URL("../../src/sys/libcrypto.ts", import.meta.url).href)
  };
    preloadLibcrypto();
    console.log(libcrypto());`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { NIXCAS_NO_LIBCRYPTO: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "null");
});
