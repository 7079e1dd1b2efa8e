/**
 * Content addresses without Nix: every kind parses and prints back, the encodings Nix accepts,
 * the malformed ones it refuses, and store paths recorded from Nix 2.8 (the full set is checked
 * against live Nix in binary_cache_nix_test.ts).
 */
import assert from "node:assert/strict";
import { toBase64, toHex } from "../../src/base/bytes.ts";
import {
  caCheckedByNarHash,
  contentAddressedStorePath,
  ContentAddressError,
  parseContentAddress,
  renderContentAddress,
  verifyContentAddress,
} from "../../src/store/content_address.ts";
import * as nixbase32 from "../../src/store/nixbase32.ts";
import { NARInfo_CA_Hash } from "../../src/store/path_info_service.ts";
import { sourceStorePath, StorePath } from "../../src/store/store_path.ts";
import { bytes as seededBytes } from "../fixtures.ts";

const KINDS: [string, NARInfo_CA_Hash, number][] = [
  ["fixed:r:sha256", NARInfo_CA_Hash.NAR_SHA256, 32],
  ["fixed:r:sha1", NARInfo_CA_Hash.NAR_SHA1, 20],
  ["fixed:r:sha512", NARInfo_CA_Hash.NAR_SHA512, 64],
  ["fixed:r:md5", NARInfo_CA_Hash.NAR_MD5, 16],
  ["text:sha256", NARInfo_CA_Hash.TEXT_SHA256, 32],
  ["fixed:sha1", NARInfo_CA_Hash.FLAT_SHA1, 20],
  ["fixed:md5", NARInfo_CA_Hash.FLAT_MD5, 16],
  ["fixed:sha256", NARInfo_CA_Hash.FLAT_SHA256, 32],
  ["fixed:sha512", NARInfo_CA_Hash.FLAT_SHA512, 64],
];

Deno.test("content address: every kind round-trips; base16 and base64 print as nix32", () => {
  KINDS.forEach(([prefix, type, size], i) => {
    const digest = seededBytes(size, i + 1);
    const text = `${prefix}:${nixbase32.encode(digest)}`;
    const ca = parseContentAddress(text);
    assert.equal(ca.type, type, prefix);
    assert.deepEqual(ca.digest, digest, prefix);
    assert.equal(renderContentAddress(ca), text);
    for (const other of [toHex(digest), toHex(digest).toUpperCase(), toBase64(digest)]) {
      const again = parseContentAddress(`${prefix}:${other}`);
      assert.deepEqual(again, ca, `${prefix}:${other}`);
      assert.equal(renderContentAddress(again), text);
    }
  });
});

Deno.test("content address: malformed ones are refused, naming the text", () => {
  const good = "1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h";
  const cases: [string, RegExp][] = [
    ["", /neither text: nor fixed:/],
    ["sha256:" + good, /neither text: nor fixed:/],
    ["source:sha256:" + good, /neither text: nor fixed:/],
    ["fixed:r:" + good, /no <algo>:<hash>/],
    ["fixed:sha3:" + good, /unknown hash algorithm "sha3"/],
    ["text:sha1:fd540npwk7x370s4s2jzpx74wf365jjm", /text content addresses use sha256, not sha1/],
    ["text:md5:" + "0".repeat(32), /use sha256/],
    ["fixed:r:sha256:" + good.slice(1), /wrong length 51/],
    ["fixed:r:sha256:" + good.replace("1", "e"), /nix32/],
    ["fixed:r:sha256:" + "g".repeat(64), /base16/],
    ["fixed:r:sha256:sha256-" + toBase64(new Uint8Array(32)), /wrong length/], // no SRI
    ["fixed:r:sha256:" + "!".repeat(44), /base64/],
    ["fixed:md5:" + good, /wrong length 52 for md5/],
    ["fixed:r:sha256:", /wrong length 0/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseContentAddress(text), (e: Error) => {
      assert.ok(e instanceof ContentAddressError, `${text}: ${e}`);
      assert.match(e.message, message, text);
      assert.ok(e.message.includes(JSON.stringify(text)), e.message);
      return true;
    });
  }
  const wrongSize = {
    $typeName: "tvix.store.v1.NARInfo.CA" as const,
    type: NARInfo_CA_Hash.FLAT_SHA1,
    digest: new Uint8Array(32),
  };
  assert.throws(() => renderContentAddress(wrongSize), /FLAT_SHA1 digest is 32 bytes \(want 20\)/);
  assert.throws(
    () => renderContentAddress({ ...wrongSize, type: 99 as NARInfo_CA_Hash }),
    /unknown content address type 99/,
  );
});

Deno.test("content address: store paths recorded from Nix 2.8", () => {
  // `nix-store --add` / `--add-fixed` of a file containing "hi\n" named f, and of a .drv.
  const narSha256 = nixbase32.decode("1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h");
  const table: [string, string, string[]][] = [
    [
      "fixed:r:sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h",
      "/nix/store/ab3li50xq0nl4q5lxdyinb8w8y13my9s-f",
      [],
    ],
    [
      "fixed:sha256:1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxslq",
      "/nix/store/hrbblgbxbvz8al5a8l85i8giajyajiwj-f",
      [],
    ],
    [
      "fixed:sha1:fd540npwk7x370s4s2jzpx74wf365jjm",
      "/nix/store/miyzd4rdj1idrrzcmmlphhh8g1m3npgb-f",
      [],
    ],
    [
      "text:sha256:0ar9xr4ihx8gqg52gfwsbcnxvyxx5650bk408fad73wds6hy3han",
      "/nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c",
      [
        // Given unsorted: Nix's references are a sorted set.
        "/nix/store/7miv20xnra0vbbwpqb42fwcqh4fql0sx-b",
        "/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a",
      ],
    ],
  ];
  for (const [text, path, refs] of table) {
    const storePath = StorePath.parseAbsolute(path);
    const ca = parseContentAddress(text);
    const references = refs.map((r) => StorePath.parseAbsolute(r));
    assert.equal(contentAddressedStorePath(storePath.name, ca, references).absolute, path, text);
    verifyContentAddress(storePath, ca, references, { narSha256 });
  }
  // fixed:r:sha256 without references is what sourceStorePath computes.
  const ca = parseContentAddress(KINDS[0][0] + ":" + nixbase32.encode(narSha256));
  assert.ok(contentAddressedStorePath("f", ca).equals(sourceStorePath("f", narSha256)));
  assert.equal(caCheckedByNarHash(ca), true);
  assert.equal(caCheckedByNarHash(parseContentAddress(table[1][0])), false);
});

Deno.test("content address: references, self references, digests", () => {
  const sha = new Uint8Array(32).fill(7);
  const ca = (type: NARInfo_CA_Hash, digest = sha) => ({
    $typeName: "tvix.store.v1.NARInfo.CA" as const,
    type,
    digest,
  });
  const ref = StorePath.parse("12wigjpizrn8axaqxj288q1b751qmwya-a");
  const nar = ca(NARInfo_CA_Hash.NAR_SHA256);
  // A self reference changes the path, and counts when given among the references.
  const plain = contentAddressedStorePath("x", nar, [ref]);
  const self = contentAddressedStorePath("x", nar, [ref], true);
  assert.ok(!plain.equals(self));
  verifyContentAddress(self, nar, [ref, self]);
  assert.throws(() => verifyContentAddress(self, nar, [ref]), /gives \/nix\/store\//);
  // Duplicate references count once, as in Nix's set.
  assert.ok(contentAddressedStorePath("x", nar, [ref, ref]).equals(plain));
  // Only fixed:r:sha256 and text take references.
  for (const type of [NARInfo_CA_Hash.FLAT_SHA256, NARInfo_CA_Hash.NAR_SHA1]) {
    const c = ca(type, new Uint8Array(type === NARInfo_CA_Hash.NAR_SHA1 ? 20 : 32));
    assert.throws(() => contentAddressedStorePath("x", c, [ref]), /only fixed:r:sha256 and text/);
    const p = contentAddressedStorePath("x", c);
    assert.throws(() => verifyContentAddress(p, c, [ref]), (e: Error) => {
      assert.ok(e instanceof ContentAddressError);
      assert.match(e.message, /does not fit it: .*only fixed:r:sha256 and text/);
      return true;
    });
  }
  const text = ca(NARInfo_CA_Hash.TEXT_SHA256);
  assert.throws(() => contentAddressedStorePath("x", text, [], true), /cannot refer to itself/);
  // Digests: the NAR hash checks fixed:r:sha256 only; contentDigest checks any kind.
  const other = new Uint8Array(32).fill(8);
  assert.throws(
    () => verifyContentAddress(plain, nar, [ref], { narSha256: other }),
    /but its NAR hash is sha256:/,
  );
  const textPath = contentAddressedStorePath("x", text);
  verifyContentAddress(textPath, text, [], { narSha256: other }); // not a NAR hash address
  verifyContentAddress(textPath, text, [], { contentDigest: sha });
  assert.throws(
    () => verifyContentAddress(textPath, text, [], { contentDigest: other }),
    /but its content sha256 is sha256:/,
  );
  assert.throws(
    () => verifyContentAddress(textPath, text, [], { contentDigest: new Uint8Array(3) }),
    /is malformed/,
  );
});
