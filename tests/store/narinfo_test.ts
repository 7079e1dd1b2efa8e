/**
 * The narinfo parser and printer without Nix: the encodings Nix accepts, what it means by a
 * missing field, and one error (with its line) for each kind of malformed input. The files Nix
 * writes are checked in binary_cache_nix_test.ts.
 */
import assert from "node:assert/strict";
import { InvalidRequestError } from "../../src/base/errors.ts";
import { toBase64, toHex } from "../../src/base/bytes.ts";
import { NarInfoError, parseNarInfo, renderNarInfo } from "../../src/store/narinfo.ts";
import * as nixbase32 from "../../src/store/nixbase32.ts";
import { makePathInfo } from "../../src/store/path_info.ts";
import { pathInfoToNarInfo } from "../../src/store/narinfo.ts";
import { NARInfo_CA_Hash } from "../../src/store/path_info_service.ts";
import { StorePath } from "../../src/store/store_path.ts";

// Written by Nix 2.8 (`nix copy --to file://…` of a builtins.toFile path).
const NIX_TEXT = "StorePath: /nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c\n" +
  "URL: nar/0ndgf1gdbg80rf26kndc1xh0ci4pkvjr4ad7wpbl71spnfkjdxv7.nar.xz\n" +
  "Compression: xz\n" +
  "FileHash: sha256:0ndgf1gdbg80rf26kndc1xh0ci4pkvjr4ad7wpbl71spnfkjdxv7\n" +
  "FileSize: 208\n" +
  "NarHash: sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0\n" +
  "NarSize: 216\n" +
  "References: 12wigjpizrn8axaqxj288q1b751qmwya-a 7miv20xnra0vbbwpqb42fwcqh4fql0sx-b\n" +
  "Sig: test-key-1:Pg09FouMs1UsCTce7eF0ksyDOJ74J5krsL/a0RyTPQ2WrwFARDOA1xFf6n+Yrhr1AlWb33qDkTIOTXP1O3yCAQ==\n" +
  "CA: text:sha256:0ar9xr4ihx8gqg52gfwsbcnxvyxx5650bk408fad73wds6hy3han\n";
const NAR_HASH = nixbase32.decode("08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0");
const MINIMAL = "StorePath: /nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c\n" +
  "URL: nar/x.nar\n" +
  "NarHash: sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0\n" +
  "NarSize: 216\n";

Deno.test("narinfo: Nix's file parses into its fields and prints back byte for byte", () => {
  const info = parseNarInfo(NIX_TEXT, "1wpp9vwzcjc45z0xad9n58kn1d1jz23k.narinfo");
  assert.equal(info.storePath.absolute, "/nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c");
  assert.equal(info.url, "nar/0ndgf1gdbg80rf26kndc1xh0ci4pkvjr4ad7wpbl71spnfkjdxv7.nar.xz");
  assert.equal(info.compression, "xz");
  assert.equal(
    nixbase32.encode(info.fileHash!),
    "0ndgf1gdbg80rf26kndc1xh0ci4pkvjr4ad7wpbl71spnfkjdxv7",
  );
  assert.equal(info.fileSize, 208);
  assert.deepEqual(info.narHash, NAR_HASH);
  assert.equal(info.narSize, 216);
  assert.deepEqual(info.references.map(String), [
    "12wigjpizrn8axaqxj288q1b751qmwya-a",
    "7miv20xnra0vbbwpqb42fwcqh4fql0sx-b",
  ]);
  assert.equal(info.deriver, undefined);
  assert.equal(info.system, undefined);
  assert.equal(info.signatures.length, 1);
  assert.equal(info.signatures[0].name, "test-key-1");
  assert.equal(info.signatures[0].data.length, 64);
  assert.equal(info.ca?.type, NARInfo_CA_Hash.TEXT_SHA256);
  assert.equal(renderNarInfo(info), NIX_TEXT);
});

Deno.test("narinfo: NarHash and FileHash in base16, nix32, base64 or SRI; printed as nix32", () => {
  const forms = [
    `sha256:${toHex(NAR_HASH)}`,
    `sha256:${toHex(NAR_HASH).toUpperCase()}`,
    `sha256:${nixbase32.encode(NAR_HASH)}`,
    `sha256:${toBase64(NAR_HASH)}`,
    `sha256-${toBase64(NAR_HASH)}`,
  ];
  for (const form of forms) {
    const text = MINIMAL.replace(/^NarHash: .*$/m, `NarHash: ${form}`) + `FileHash: ${form}\n`;
    const info = parseNarInfo(text);
    assert.deepEqual(info.narHash, NAR_HASH, form);
    assert.deepEqual(info.fileHash, NAR_HASH, form);
    assert.match(
      renderNarInfo(info),
      /^NarHash: sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0$/m,
    );
  }
});

Deno.test("narinfo: what missing and special values mean", () => {
  const info = parseNarInfo(MINIMAL);
  assert.equal(info.compression, "bzip2"); // Nix's default for a missing Compression
  assert.deepEqual(info.references, []);
  assert.equal(info.fileHash, undefined);
  assert.equal(info.fileSize, undefined);
  assert.equal(
    renderNarInfo(info),
    MINIMAL.replace("NarHash", "Compression: bzip2\nNarHash") + "References: \n",
  );
  // An empty Compression is bzip2 too; unknown-deriver is none; an empty CA is none; an
  // unknown field is skipped; References may have extra spaces or be empty.
  const more = parseNarInfo(
    MINIMAL + "Compression: \nDeriver: unknown-deriver\nCA: \nFuture: 1\n" +
      "References:  12wigjpizrn8axaqxj288q1b751qmwya-a \nSystem: x86_64-linux\n",
  );
  assert.equal(more.compression, "bzip2");
  assert.equal(more.deriver, undefined);
  assert.equal(more.ca, undefined);
  assert.equal(more.system, "x86_64-linux");
  assert.deepEqual(more.references.map(String), ["12wigjpizrn8axaqxj288q1b751qmwya-a"]);
  const drv = parseNarInfo(MINIMAL + "Deriver: 480p862xw26ciwshg08gjp12y4sak88m-hello.drv\n");
  assert.equal(drv.deriver?.name, "hello.drv");
  assert.match(renderNarInfo(drv), /\nDeriver: 480p862xw26ciwshg08gjp12y4sak88m-hello\.drv\n$/);
  // Repeated Sig lines, printed sorted and once, as Nix's set of signatures.
  const sig = (n: number, c: string) =>
    `Sig: k${n}:${toBase64(new Uint8Array(64).fill(c.charCodeAt(0)))}\n`;
  const sigs = parseNarInfo(MINIMAL + sig(2, "b") + sig(1, "a") + sig(2, "b"));
  assert.deepEqual(sigs.signatures.map((s) => s.name), ["k2", "k1", "k2"]);
  assert.equal(renderNarInfo(sigs).match(/^Sig: /gm)?.length, 2);
  assert.match(renderNarInfo(sigs), /Sig: k1:.*\nSig: k2:/);
});

Deno.test("narinfo: each malformed input is refused with its line and field", () => {
  const cases: [string, string, number | undefined, RegExp][] = [
    ["no StorePath", MINIMAL.replace(/^StorePath.*\n/, ""), undefined, /no StorePath field/],
    ["no URL", MINIMAL.replace(/^URL.*\n/m, ""), undefined, /no URL field/],
    ["no NarHash", MINIMAL.replace(/^NarHash.*\n/m, ""), undefined, /no NarHash field/],
    ["no NarSize", MINIMAL.replace(/^NarSize.*\n/m, ""), undefined, /no NarSize field/],
    ["empty", "", undefined, /no StorePath field/],
    ["zero NarSize", MINIMAL.replace("NarSize: 216", "NarSize: 0"), 4, /NarSize: 0/],
    [
      "NarSize not a number",
      MINIMAL.replace("NarSize: 216", "NarSize: 2k"),
      4,
      /"2k" is not a size/,
    ],
    ["negative NarSize", MINIMAL.replace("NarSize: 216", "NarSize: -1"), 4, /not a size/],
    ["huge NarSize", MINIMAL.replace("216", "99999999999999999999"), 4, /not a size/],
    ["FileSize", MINIMAL + "FileSize: 1.5\n", 5, /FileSize: "1\.5" is not a size/],
    ["NarHash bad char", MINIMAL.replace("08hng", "08hne"), 3, /NarHash: invalid hash.*nix32/],
    ["NarHash short", MINIMAL.replace("q6zc0", "q6zc"), 3, /NarHash: .*wrong length 51/],
    ["NarHash no type", MINIMAL.replace("sha256:", ""), 3, /NarHash: .*no algorithm prefix/],
    ["NarHash unknown type", MINIMAL.replace("sha256:", "sha3:"), 3, /unknown hash algorithm/],
    [
      "NarHash sha1",
      MINIMAL.replace(/sha256:\w+/, "sha1:fd540npwk7x370s4s2jzpx74wf365jjm"),
      3,
      /NarHash must be sha256, not sha1/,
    ],
    ["FileHash bad", MINIMAL + "FileHash: sha256:xyz\n", 5, /FileHash: invalid hash/],
    [
      "relative StorePath",
      MINIMAL.replace("/nix/store/1wpp", "1wpp"),
      1,
      /StorePath: .*does not start with \/nix\/store\//,
    ],
    ["bad StorePath", MINIMAL.replace("-c\n", "-c d\n"), 1, /StorePath: invalid store path/],
    [
      "bad reference",
      MINIMAL + "References: 12wigjpizrn8axaqxj288q1b751qmwya-a /nix/store/x\n",
      5,
      /References: invalid store path "\/nix\/store\/x"/,
    ],
    [
      "reference with bad hash",
      MINIMAL + "References: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-a\n",
      5,
      /References: invalid store path/,
    ],
    [
      "Deriver not .drv",
      MINIMAL + "Deriver: 480p862xw26ciwshg08gjp12y4sak88m-hello\n",
      5,
      /Deriver: .*does not end in \.drv/,
    ],
    ["bad Sig", MINIMAL + "Sig: test-key-1\n", 5, /Sig: signature is not in the form NAME:BASE64/],
    [
      "short Sig",
      MINIMAL + "Sig: k:AAAA\n",
      5,
      /Sig: signature "k": decodes to 3 bytes \(want 64\)/,
    ],
    [
      "bad CA",
      MINIMAL + "CA: text:sha1:fd540npwk7x370s4s2jzpx74wf365jjm\n",
      5,
      /CA: invalid content address/,
    ],
    ["duplicate field", MINIMAL + "NarSize: 216\n", 5, /NarSize: given twice/],
    [
      "duplicate References",
      MINIMAL + "References: \nReferences: \n",
      6,
      /References: given twice/,
    ],
    ["no final newline", MINIMAL.slice(0, -1), 4, /does not end in a newline/],
    [
      "no space after colon",
      MINIMAL + "System:x86_64-linux\n",
      5,
      /"System:x86_64-linux" is not "Name: value"/,
    ],
    ["no colon", MINIMAL + "garbage\n", 5, /is not "Name: value"/],
    ["empty line", MINIMAL + "\n", 5, /"" is not "Name: value"/],
    ["CRLF", MINIMAL.replaceAll("\n", "\r\n"), 1, /StorePath: .*"\\r"/],
    ["empty URL", MINIMAL.replace("URL: nar/x.nar", "URL: "), 2, /URL: empty/],
  ];
  for (const [what, text, line, message] of cases) {
    assert.throws(() => parseNarInfo(text, "x.narinfo"), (e: Error) => {
      assert.ok(e instanceof NarInfoError && e instanceof InvalidRequestError, `${what}: ${e}`);
      assert.equal(e.line, line, `${what}: ${e.message}`);
      assert.match(e.message, message, what);
      assert.ok(e.message.startsWith("narinfo x.narinfo: "), e.message);
      if (line !== undefined) assert.ok(e.message.includes(`line ${line}: `), e.message);
      return true;
    });
  }
});

Deno.test("narinfo: render refuses what Nix could not read back", () => {
  const info = parseNarInfo(MINIMAL);
  assert.throws(() => renderNarInfo({ ...info, narSize: 0 }), /NarSize/);
  assert.throws(() => renderNarInfo({ ...info, url: "" }), /URL/);
  assert.throws(() => renderNarInfo({ ...info, url: "a\nStorePath: x" }), /URL/);
  assert.throws(() => renderNarInfo({ ...info, narHash: new Uint8Array(20) }), /NarHash/);
  assert.throws(() => renderNarInfo({ ...info, fileHash: new Uint8Array(20) }), /FileHash/);
  assert.throws(() => renderNarInfo({ ...info, system: "a\nb" }), /System/);
});

Deno.test("narinfo: from a PathInfo, with deriver, CA and System", () => {
  const storePath = StorePath.parse("1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c");
  const info = makePathInfo({
    storePath,
    node: {
      case: "file",
      value: {
        $typeName: "tvix.castore.v1.FileNode",
        name: new Uint8Array(),
        digest: new Uint8Array(32),
        size: 9,
        executable: false,
      },
    },
    narSize: 216,
    narSha256: NAR_HASH,
    references: [StorePath.parse("7miv20xnra0vbbwpqb42fwcqh4fql0sx-b")],
  });
  info.narinfo!.deriver = {
    $typeName: "tvix.store.v1.StorePath",
    name: "c",
    digest: StorePath.parse("480p862xw26ciwshg08gjp12y4sak88m-x").digest,
  };
  info.narinfo!.ca = {
    $typeName: "tvix.store.v1.NARInfo.CA",
    type: NARInfo_CA_Hash.FLAT_SHA1,
    digest: new Uint8Array(20),
  };
  const narinfo = pathInfoToNarInfo(info, {
    url: "nar/c.nar",
    compression: "none",
    fileSize: 216,
    system: "x86_64-linux",
  });
  assert.equal(
    renderNarInfo(narinfo),
    "StorePath: /nix/store/1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c\n" +
      "URL: nar/c.nar\nCompression: none\nFileSize: 216\n" +
      "NarHash: sha256:08hng0qg1lxsalvivd3ix47nn2l3wjmymm593gk31mnkqznq6zc0\nNarSize: 216\n" +
      "References: 7miv20xnra0vbbwpqb42fwcqh4fql0sx-b\n" +
      "Deriver: 480p862xw26ciwshg08gjp12y4sak88m-c.drv\nSystem: x86_64-linux\n" +
      `CA: fixed:sha1:${"0".repeat(32)}\n`,
  );
  assert.throws(
    () => pathInfoToNarInfo({ ...info, narinfo: undefined }, { url: "u", compression: "none" }),
    /has no narinfo/,
  );
});
