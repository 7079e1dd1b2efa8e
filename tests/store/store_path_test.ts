import assert from "node:assert/strict";
import { InvalidRequestError } from "../../src/base/errors.ts";
import {
  compressHash,
  parseStorePathWithSubpath,
  sourceStorePath,
  StorePath,
  StorePathError,
  type StorePathErrorKind,
  validateName,
} from "../../src/store/store_path.ts";

const fromHex = (h: string) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
const HASH = "00bgd045z0d4icpbc2yyz4gx48ak44la";
const DIGEST = fromHex("8a12321522fd91efbd60ebb2481af88580f61600");
const BASENAME = `${HASH}-net-tools-1.60_p20170221182432`;

Deno.test("store path: parse basename, absolute, bytes; print", () => {
  const p = StorePath.parse(BASENAME);
  assert.deepEqual(p.digest, DIGEST);
  assert.equal(p.name, "net-tools-1.60_p20170221182432");
  assert.equal(p.toString(), BASENAME);
  assert.equal(p.absolute, `/nix/store/${BASENAME}`);
  assert.ok(StorePath.parseAbsolute(`/nix/store/${BASENAME}`).equals(p));
  assert.ok(StorePath.fromBytes(new TextEncoder().encode(BASENAME)).equals(p));
  assert.ok(new StorePath(DIGEST, p.name).equals(p));
  assert.ok(!new StorePath(DIGEST, "other").equals(p));
});

Deno.test("store path: valid names", () => {
  const ok = [
    "a",
    "A-Za-z0-9+-._?=",
    ".dotfile", // Nix 2.8 accepts a leading dot (checked with nix-store --add)
    "x".repeat(211),
    "hello-2.12.1.drv",
    "a=b",
  ];
  for (const name of ok) {
    validateName(name);
    assert.equal(StorePath.parse(`${HASH}-${name}`).name, name);
  }
});

Deno.test("store path: invalid basenames, each with its kind and the text named", () => {
  const bad: [string, StorePathErrorKind][] = [
    ["", "InvalidLength"],
    [HASH, "InvalidLength"],
    [`${HASH}-`, "InvalidLength"], // empty name
    [`${HASH.slice(0, 20)}-net-tools-1.60_p20170221182432`, "InvalidHashEncoding"],
    [`00bgd045z0d4icpbc2yyz4gx48aku4la-net-tools`, "InvalidHashEncoding"], // 'u'
    [`${HASH.toUpperCase()}-x`, "InvalidHashEncoding"],
    [`${HASH}net-tools-1.60_p20170221182432`, "MissingDash"],
    [`${HASH}_foo`, "MissingDash"],
    [`${BASENAME}/bin/arp`, "InvalidName"],
    [`${HASH}-foo bar`, "InvalidName"],
    [`${HASH}-foo~`, "InvalidName"],
    [`${HASH}-é`, "InvalidName"],
    [`${HASH}-${"x".repeat(212)}`, "InvalidLength"],
  ];
  for (const [text, kind] of bad) {
    assert.throws(() => StorePath.parse(text), (e: Error) => {
      assert.ok(e instanceof StorePathError && e instanceof InvalidRequestError, String(e));
      assert.equal(e.kind, kind, `${text}: ${e.message}`);
      assert.ok(e.message.includes(JSON.stringify(text)), e.message);
      return true;
    });
  }
  assert.throws(() => StorePath.parseAbsolute(BASENAME), { kind: "MissingStoreDir" });
  assert.throws(() => StorePath.parseAbsolute(`/nix/store/${BASENAME}/`), { kind: "InvalidName" });
  assert.throws(() => StorePath.parseAbsolute(`/nix/store/foo`), { kind: "InvalidLength" });
  // Non-ASCII node name bytes.
  const raw = new Uint8Array([...new TextEncoder().encode(`${HASH}-a`), 0xff]);
  assert.throws(() => StorePath.fromBytes(raw), { kind: "InvalidName" });
  assert.throws(() => new StorePath(new Uint8Array(19), "x"), /digest length: 19/);
});

Deno.test("store path: with sub path", () => {
  const table: [string, string[]][] = [
    [`/nix/store/${BASENAME}`, []],
    [`/nix/store/${BASENAME}/`, []],
    [`/nix/store/${BASENAME}/bin/arp`, ["bin", "arp"]],
    [`/nix/store/${BASENAME}/bin//arp/`, ["bin", "arp"]],
  ];
  for (const [text, subpath] of table) {
    const r = parseStorePathWithSubpath(text);
    assert.equal(r.storePath.toString(), BASENAME);
    assert.deepEqual(r.subpath, subpath, text);
  }
  assert.throws(() => parseStorePathWithSubpath("/nix/store/"), { kind: "InvalidName" });
  assert.throws(() => parseStorePathWithSubpath("/nix/store/foo"), { kind: "InvalidLength" });
  assert.throws(() => parseStorePathWithSubpath(BASENAME), { kind: "MissingStoreDir" });
  assert.throws(() => parseStorePathWithSubpath(`/nix/store/${BASENAME}/../x`), /"\.\."/);
});

Deno.test("compressHash folds by XOR", () => {
  const h = Uint8Array.from({ length: 32 }, (_, i) => i);
  const c = compressHash(h, 20);
  for (let i = 0; i < 20; i++) assert.equal(c[i], i < 12 ? i ^ (i + 20) : i);
  assert.deepEqual(compressHash(new Uint8Array([1, 2, 3]), 2), new Uint8Array([1 ^ 3, 2]));
});

Deno.test("sourceStorePath matches nix-store --add (values recorded from Nix 2.8)", () => {
  // `nix-hash --type sha256 F` of a regular file F containing "hi\n", then F copied to `.foo`
  // and `a=b` and added with `NIX_REMOTE='local?root=/tmp/x' nix-store --add`.
  const narSha256 = fromHex("10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6");
  assert.equal(
    sourceStorePath(".foo", narSha256).absolute,
    "/nix/store/lpg73p3x49mjkxrdj3vxhhzslln67blr-.foo",
  );
  assert.equal(
    sourceStorePath("a=b", narSha256).absolute,
    "/nix/store/i06qvnbh24siaw63mw98n4bi36zmkx45-a=b",
  );
  assert.throws(() => sourceStorePath("a b", narSha256), StorePathError);
  assert.throws(() => sourceStorePath("x", new Uint8Array(20)), /want 32/);
});
