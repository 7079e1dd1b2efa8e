/**
 * Keys, signatures and the fingerprint without Nix: malformed keys name their file, a
 * signature verifies only for its key and data, the fingerprint is Nix's (sorted references,
 * nix32 hash), signing merges without duplicates, and verifyPathInfo says why it refuses.
 * Equality with Nix's own signatures is checked in binary_cache_nix_test.ts.
 */
import assert from "node:assert/strict";
import { fromBase64, toBase64 } from "../../src/base/bytes.ts";
import { InvalidRequestError, NotFoundError } from "../../src/base/errors.ts";
import { type NarInfo, narInfoToPathInfo, parseNarInfo } from "../../src/store/narinfo.ts";
import {
  fingerprint,
  formatSignature,
  parseSignature,
  parseTrustedPublicKeys,
  PublicKey,
  SignatureError,
  SigningKey,
  signPathInfo,
  verifyPathInfo,
} from "../../src/store/signature.ts";

// A key pair written by `nix-store --generate-binary-cache-key test-key-1 sk pk` (Nix 2.8), and
// the Sig: line Nix wrote with it for the path below.
const SK =
  "test-key-1:Kltlnr4XP+bWgjXm+8iW7KyXZD76msbbEc+iie021RIlHqaDOyo33Iaz5V2KJta1qel4bCM2EDIXywe2i0mWVA==";
const PK = "test-key-1:JR6mgzsqN9yGs+VdiibWtanpeGwjNhAyF8sHtotJllQ=";
const NARINFO = "StorePath: /nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c\n" +
  "URL: nar/08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0.nar\n" +
  "Compression: none\n" +
  "NarHash: sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0\n" +
  "NarSize: 216\n" +
  "References: 12wigjpizrn8axaqxj288q1b751qmwya-a 7miv20xnra0vbbwpqb42fwcqh4fql0sx-b\n" +
  "Sig: test-key-1:Pg09FouMs1UsCTce7eF0ksyDOJ74J5krsL/a0RyTPQ2WrwFARDOA1xFf6n+Yrhr1AlWb33qDkTIOTXP1O3yCAQ==\n" +
  "CA: text:sha256:0ar9xr4ihx8gqg52gfwsbcnxvyxx5650bk408fad73wds6hy3han\n";
const FINGERPRINT = "1;/nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c;" +
  "sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0;216;" +
  "/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a,/nix/store/7miv20xnra0vbbwpqb42fwcqh4fql0sx-b";

Deno.test("signature: Nix's key signs as Nix did (recorded)", async () => {
  const key = await SigningKey.parse(SK + "\n", "sk"); // a trailing newline is fine
  assert.equal(key.name, "test-key-1");
  assert.equal(key.publicKey.toString(), PK);
  assert.equal(key.toSecretKeyFile(), SK);
  const info = parseNarInfo(NARINFO);
  assert.equal(fingerprint(info), FINGERPRINT);
  const sig = await key.sign(FINGERPRINT);
  assert.equal(formatSignature(sig), formatSignature(info.signatures[0]));
  assert.ok(await PublicKey.parse(PK).verify(FINGERPRINT, sig.data));
  assert.ok(!(await PublicKey.parse(PK).verify(FINGERPRINT + " ", sig.data)));
  assert.ok(!(await PublicKey.parse(PK).verify(FINGERPRINT, sig.data.subarray(0, 63))));
});

Deno.test("signature: fingerprint sorts references, counts each once, needs a NAR size", () => {
  const info = parseNarInfo(NARINFO);
  const reversed: NarInfo = { ...info, references: [...info.references].reverse() };
  assert.equal(fingerprint(reversed), FINGERPRINT);
  const twice: NarInfo = { ...info, references: [...info.references, info.references[0]] };
  assert.equal(fingerprint(twice), FINGERPRINT);
  assert.equal(
    fingerprint({ ...info, references: [] }),
    FINGERPRINT.replace(/;\/nix\/store\/12w.*$/, ";"),
  );
  assert.throws(() => fingerprint({ ...info, narSize: 0 }), /NAR size is not known/);
  // A PathInfo gives the same fingerprint as its narinfo; one without narinfo has none.
  const pathInfo = narInfoToPathInfo(info, {
    case: "symlink",
    value: {
      $typeName: "tvix.castore.v1.SymlinkNode",
      name: new Uint8Array(),
      target: new TextEncoder().encode("x"),
    },
  });
  assert.equal(fingerprint(pathInfo), FINGERPRINT);
  assert.throws(() => fingerprint({ ...pathInfo, narinfo: undefined }), /has no narinfo/);
  assert.throws(() => fingerprint({ ...pathInfo, node: undefined }), /no root node/);
});

Deno.test("signature: malformed keys are refused, naming the file and key", async () => {
  const seedAndPub = fromBase64(SK.split(":")[1]);
  const corrupt = seedAndPub.slice();
  corrupt[40] ^= 1; // the public half no longer matches the seed
  const secretCases: [string, RegExp][] = [
    ["", /secret key \(sk\) is not in the form NAME:BASE64/],
    ["test-key-1", /not in the form NAME:BASE64/],
    [":" + SK.split(":")[1], /not in the form NAME:BASE64/],
    ["test-key-1:", /not in the form NAME:BASE64/],
    ["test-key-1:%%%%", /secret key "test-key-1" \(sk\): invalid base64/],
    [PK, /secret key "test-key-1" \(sk\): decodes to 32 bytes \(want 64\)/],
    [`test-key-1:${toBase64(corrupt)}`, /not the public key of its seed/],
  ];
  for (const [text, message] of secretCases) {
    await assert.rejects(SigningKey.parse(text, "sk"), (e: Error) => {
      assert.ok(e instanceof SignatureError && e instanceof InvalidRequestError, String(e));
      assert.match(e.message, message, text);
      assert.ok(!e.message.includes(SK.split(":")[1].slice(0, 20)), "leaks the secret");
      return true;
    });
  }
  const publicCases: [string, RegExp][] = [
    ["nocolon", /public key \(pk\) is not in the form NAME:BASE64/],
    [SK, /public key "test-key-1" \(pk\): decodes to 64 bytes \(want 32\)/],
    ["k:" + toBase64(new Uint8Array(31)), /decodes to 31 bytes/],
  ];
  for (const [text, message] of publicCases) {
    assert.throws(() => PublicKey.parse(text, "pk"), (e: Error) => {
      assert.ok(e instanceof SignatureError, String(e));
      assert.match(e.message, message, text);
      return true;
    });
  }
  assert.throws(() => new PublicKey("a:b", new Uint8Array(32)), /invalid key name/);
  assert.throws(() => parseTrustedPublicKeys(`${PK} bad`, "nix.conf"), /nix\.conf, key 2/);
  assert.throws(() => parseSignature("k:AAAA", "Sig"), /signature "k" \(Sig\): decodes to 3/);
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(SigningKey.readFile(`${dir}/missing`), (e: Error) => {
      assert.ok(e instanceof NotFoundError);
      assert.ok(e.message.includes(`${dir}/missing`), e.message);
      return true;
    });
    await assert.rejects(PublicKey.readFile(dir), (e: Error) => e.message.includes(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signature: trusted keys parse from a whitespace-separated list", () => {
  const other = "other-1:" + toBase64(new Uint8Array(32).fill(9));
  const keys = parseTrustedPublicKeys(`  ${PK}\n\t${other} `);
  assert.deepEqual(keys.map(String), [PK, other]);
  assert.deepEqual(parseTrustedPublicKeys(""), []);
});

Deno.test("signature: signPathInfo merges; verifyPathInfo says why it refuses", async () => {
  const nixKey = await SigningKey.parse(SK);
  const ours = await SigningKey.generate("ours-1");
  const info = parseNarInfo(NARINFO);
  // Signing again with Nix's key adds nothing (same name and bytes); ours is appended.
  assert.deepEqual((await signPathInfo(info, nixKey)).signatures, info.signatures);
  const both = await signPathInfo(info, ours);
  assert.deepEqual(both.signatures.map((s) => s.name), ["test-key-1", "ours-1"]);
  assert.equal(info.signatures.length, 1, "the input is not changed");
  assert.deepEqual(await verifyPathInfo(both, [ours.publicKey], { contentAddressed: false }), {
    valid: true,
    by: "signature",
    keyName: "ours-1",
  });

  // It is content-addressed (text:), so it needs no signature unless told otherwise.
  assert.deepEqual(await verifyPathInfo({ ...info, signatures: [] }, []), {
    valid: true,
    by: "content-address",
    contentChecked: false,
  });
  const noCa = { ...info, ca: undefined };
  const refused = async (i: NarInfo, keys: PublicKey[], ...want: RegExp[]) => {
    const v = await verifyPathInfo(i, keys);
    assert.equal(v.valid, false);
    assert.ok(!v.valid);
    assert.match(v.reason, /^store path \/nix\/store\/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c is not/);
    for (const w of want) assert.match(v.reason, w);
  };
  await refused({ ...noCa, signatures: [] }, [nixKey.publicKey], /it has no signatures/);
  await refused(noCa, [ours.publicKey], /signature by "test-key-1": not a trusted key/);
  const flipped = info.signatures[0].data.slice();
  flipped[63] ^= 0x80;
  await refused(
    { ...noCa, signatures: [{ ...info.signatures[0], data: flipped }] },
    [nixKey.publicKey],
    /signature by "test-key-1": does not verify/,
  );
  // A CA that does not give the store path: falls back to signatures, and says so.
  const wrongCa = { ...info, references: info.references.slice(1) };
  await refused(wrongCa, [ours.publicKey], /its CA text:sha256:0ar9.* does not hold/);
  // An invalid point as a public key verifies nothing (and does not throw).
  const junk = new PublicKey("test-key-1", new Uint8Array(32).fill(0xff));
  await refused(noCa, [junk], /does not verify/);
  // Two trusted keys of one name: either may verify.
  assert.equal((await verifyPathInfo(noCa, [junk, nixKey.publicKey])).valid, true);
});

Deno.test("signature: generated keys round-trip through their files", async () => {
  const key = await SigningKey.generate("gen-1");
  const again = await SigningKey.parse(key.toSecretKeyFile());
  assert.equal(again.publicKey.toString(), key.publicKey.toString());
  const data = "1;/nix/store/x";
  assert.deepEqual((await again.sign(data)).data, (await key.sign(data)).data);
  await assert.rejects(SigningKey.generate("a:b"), /invalid key name/);
  const other = await SigningKey.generate("gen-1");
  assert.notEqual(other.publicKey.toString(), key.publicKey.toString());
  assert.ok(!(await other.publicKey.verify(data, (await key.sign(data)).data)));
});
