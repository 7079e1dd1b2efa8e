/**
 * Signatures, narinfo and content addresses against real Nix 2.8: in a throw-away store, Nix
 * makes text paths (builtins.toFile, a .drv), `nix-store --add` and `--add-fixed` paths (every
 * fixed kind) and a built, input-addressed output, and `nix copy`s them to a `file://` cache
 * signed with a key from `nix-store --generate-binary-cache-key`. Our parser must read every
 * narinfo Nix wrote and print it back byte for byte, our signature over our fingerprint must
 * equal Nix's `Sig:` (ed25519 is deterministic), every CA must give its store path, and Nix must
 * accept a narinfo we signed with our own key and refuse it with one bit flipped.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { InvalidRequestError } from "../../src/base/errors.ts";
import {
  ContentAddressError,
  fingerprint,
  formatSignature,
  type NarInfo,
  narInfoToPathInfo,
  parseNarInfo,
  parseTrustedPublicKeys,
  pathInfoToNarInfo,
  PublicKey,
  renderContentAddress,
  renderNarInfo,
  SigningKey,
  signPathInfo,
  StorePath,
  verifyContentAddress,
  verifyPathInfo,
} from "../../src/store/mod.ts";
import { NARInfo_CA_Hash } from "../../src/store/path_info_service.ts";
import { have, run } from "../prereq.ts";
import { type Fixture, makeFixture, sh } from "../nix_fixture.ts";

const NIX = have("nix binary cache oracle tests", ["nix", "nix-store", "nix-instantiate"]);

async function narinfos(cache: string): Promise<{ file: string; text: string }[]> {
  const out = [];
  for await (const e of Deno.readDir(cache)) {
    if (e.name.endsWith(".narinfo")) {
      out.push({ file: e.name, text: await Deno.readTextFile(`${cache}/${e.name}`) });
    }
  }
  return out.sort((a, b) => a.file < b.file ? -1 : 1);
}

const hash = (algo: string, data: Uint8Array) =>
  new Uint8Array(createHash(algo).update(data).digest());

/** The digest the CA's kind hashes, computed from what Nix stored. */
async function contentDigest(fx: Fixture, info: NarInfo): Promise<Uint8Array> {
  const ca = info.ca!;
  const name = NARInfo_CA_Hash[ca.type];
  const algo = name.split("_")[1].toLowerCase();
  if (name.startsWith("NAR_")) {
    return hash(algo, await Deno.readFile(`${fx.cache}/${info.url}`)); // compression=none
  }
  return hash(algo, await Deno.readFile(`${fx.store}${info.storePath.absolute}`));
}

Deno.test({
  name: "binary cache against Nix 2.8: keys, Sig lines, narinfo text, content addresses",
  ignore: !NIX,
  async fn(t) {
    const fx = await makeFixture();
    try {
      const key = await SigningKey.readFile(fx.secretKeyFile);
      const publicKey = await PublicKey.readFile(fx.publicKeyFile);
      const files = await narinfos(fx.cache);
      const parsed = files.map(({ file, text }) => ({
        file,
        text,
        info: parseNarInfo(text, file),
      }));

      await t.step("keys from nix-store --generate-binary-cache-key parse", async () => {
        assert.equal(key.name, "test-key-1");
        assert.equal(publicKey.name, "test-key-1");
        assert.deepEqual(key.publicKey.key, publicKey.key);
        assert.equal(key.toSecretKeyFile(), await Deno.readTextFile(fx.secretKeyFile));
        assert.equal(publicKey.toString(), await Deno.readTextFile(fx.publicKeyFile));
        const trusted = parseTrustedPublicKeys(
          `other-1:${btoa("x".repeat(32))}  ${publicKey}\n`,
        );
        assert.deepEqual(trusted.map((k) => k.name), ["other-1", "test-key-1"]);
      });

      await t.step("every narinfo Nix wrote parses and prints back byte for byte", () => {
        // 3 toFile, 2 --add, 4 flat --add-fixed, 3 recursive, hello, its .drv and src.
        assert.equal(parsed.length, 15, parsed.map((p) => p.file).join(" "));
        for (const { file, text, info } of parsed) {
          assert.equal(file, `${info.storePath.toString().slice(0, 32)}.narinfo`);
          assert.equal(renderNarInfo(info), text, file);
          assert.equal(info.compression, "none");
          assert.equal(info.signatures.length, 1, file);
        }
        const hello = parsed.find((p) => p.info.storePath.absolute === fx.hello)!.info;
        assert.equal(hello.deriver?.absolute, fx.drv);
        assert.equal(hello.ca, undefined);
        const drv = parsed.find((p) => p.info.storePath.absolute === fx.drv)!.info;
        assert.equal(drv.references.length, 1);
        assert.equal(drv.references[0].name, "src");
      });

      await t.step("our signature over our fingerprint equals Nix's Sig line", async () => {
        for (const { file, info } of parsed) {
          const ours = await key.sign(fingerprint(info));
          assert.equal(formatSignature(ours), formatSignature(info.signatures[0]), file);
          const resigned = await signPathInfo({ ...info, signatures: [] }, key);
          assert.equal(renderNarInfo(resigned), renderNarInfo(info), file);
          assert.deepEqual(
            await verifyPathInfo(info, [publicKey], { contentAddressed: false }),
            { valid: true, by: "signature", keyName: "test-key-1" },
            file,
          );
        }
      });

      await t.step("a wrong key, a flipped bit or a changed field does not verify", async () => {
        const hello = parsed.find((p) => p.info.storePath.absolute === fx.hello)!.info;
        const sameName = await SigningKey.generate("test-key-1");
        const checks: [string, NarInfo, PublicKey[]][] = [
          ["other key of the same name", hello, [sameName.publicKey]],
          ["no trusted key", hello, []],
          ["key of another name", hello, [new PublicKey("other-1", publicKey.key)]],
        ];
        const sig = hello.signatures[0];
        for (let bit = 0; bit < 512; bit += 97) {
          const data = sig.data.slice();
          data[bit >> 3] ^= 1 << (bit & 7);
          checks.push([`signature bit ${bit}`, { ...hello, signatures: [{ ...sig, data }] }, [
            publicKey,
          ]]);
        }
        const narHash = hello.narHash.slice();
        narHash[0] ^= 1;
        checks.push(["NAR hash", { ...hello, narHash }, [publicKey]]);
        checks.push(["NAR size", { ...hello, narSize: hello.narSize + 1 }, [publicKey]]);
        checks.push([
          "references",
          { ...hello, references: [StorePath.parseAbsolute(fx.drv)] },
          [publicKey],
        ]);
        for (const [what, info, keys] of checks) {
          const v = await verifyPathInfo(info, keys);
          assert.equal(v.valid, false, what);
          assert.ok(!v.valid && v.reason.includes(fx.hello), what);
        }
      });

      await t.step("every CA gives its store path; content digests match", async () => {
        const kinds = new Set<string>();
        for (const { file, info } of parsed) {
          if (!info.ca) continue;
          kinds.add(renderContentAddress(info.ca).split(":").slice(0, -1).join(":"));
          const digest = await contentDigest(fx, info);
          verifyContentAddress(info.storePath, info.ca, info.references, {
            narSha256: info.narHash,
            contentDigest: digest,
          });
          const v = await verifyPathInfo({ ...info, signatures: [] }, []);
          assert.deepEqual(v, {
            valid: true,
            by: "content-address",
            contentChecked: info.ca.type === NARInfo_CA_Hash.NAR_SHA256,
          }, file);
          // Another name, a missing or extra reference, other content: refused.
          const renamed = new StorePath(info.storePath.digest, `${info.storePath.name}x`);
          assert.throws(
            () => verifyContentAddress(renamed, info.ca!, info.references),
            ContentAddressError,
          );
          const refs = info.references.length > 0
            ? info.references.slice(1)
            : [StorePath.parseAbsolute(fx.hello)];
          assert.throws(
            () => verifyContentAddress(info.storePath, info.ca!, refs),
            ContentAddressError,
            file,
          );
          const other = digest.slice();
          other[0] ^= 1;
          assert.throws(
            () =>
              verifyContentAddress(info.storePath, info.ca!, info.references, {
                contentDigest: other,
              }),
            (e: Error) => e instanceof ContentAddressError && e.message.includes("but its"),
          );
        }
        assert.deepEqual([...kinds].sort(), [
          "fixed:md5",
          "fixed:r:md5",
          "fixed:r:sha1",
          "fixed:r:sha256",
          "fixed:r:sha512",
          "fixed:sha1",
          "fixed:sha256",
          "fixed:sha512",
          "text:sha256",
        ]);
      });

      await t.step("narinfo -> PathInfo -> narinfo keeps every field", async () => {
        const root = {
          case: "file" as const,
          value: {
            $typeName: "tvix.castore.v1.FileNode" as const,
            name: new Uint8Array(),
            digest: new Uint8Array(32),
            size: 3,
            executable: false,
          },
        };
        for (const { file, text, info } of parsed) {
          const pathInfo = narInfoToPathInfo(info, root);
          assert.equal(fingerprint(pathInfo), fingerprint(info), file);
          const back = pathInfoToNarInfo(pathInfo, {
            url: info.url,
            compression: info.compression,
            fileHash: info.fileHash,
            fileSize: info.fileSize,
          });
          assert.equal(renderNarInfo(back), text, file);
          const signed = await signPathInfo(
            { ...pathInfo, narinfo: { ...pathInfo.narinfo!, signatures: [] } },
            key,
          );
          assert.deepEqual(signed.narinfo?.signatures, pathInfo.narinfo?.signatures, file);
        }
        const hello = narInfoToPathInfo(
          parsed.find((p) => p.info.storePath.absolute === fx.hello)!.info,
          root,
        );
        assert.equal(hello.narinfo?.deriver?.name, "hello");
      });

      await t.step("Nix accepts what we sign with our key and refuses a flipped bit", async () => {
        const ours = await SigningKey.generate("ours-1");
        const hello = parsed.find((p) => p.info.storePath.absolute === fx.hello)!.info;
        for (const flip of [false, true]) {
          const cache = `${fx.base}/ours-${flip}`;
          await Deno.mkdir(`${cache}/nar`, { recursive: true });
          await Deno.writeTextFile(`${cache}/nix-cache-info`, "StoreDir: /nix/store\n");
          await Deno.copyFile(`${fx.cache}/${hello.url}`, `${cache}/${hello.url}`);
          const unsigned: NarInfo = { ...hello, signatures: [] };
          const signed = await signPathInfo(unsigned, ours);
          if (flip) signed.signatures[0].data[7] ^= 0x10;
          await Deno.writeTextFile(
            `${cache}/${hello.storePath.toString().slice(0, 32)}.narinfo`,
            renderNarInfo(signed),
          );
          const out = await run("nix", [
            "--experimental-features",
            "nix-command",
            "copy",
            "--from",
            `file://${cache}`,
            "--to",
            `local?root=${fx.base}/target-${flip}`,
            "--option",
            "trusted-public-keys",
            ours.publicKey.toString(),
            fx.hello,
          ], { env: { ...fx.env, XDG_CACHE_HOME: `${fx.base}/cache-${flip}` } });
          if (flip) {
            assert.notEqual(out.code, 0);
            assert.match(out.stderr, /lacks a valid signature/);
          } else {
            assert.equal(out.code, 0, out.stderr);
          }
        }
      });

      await t.step("a key we write signs in Nix as it signs here", async () => {
        const ours = await SigningKey.generate("ours-2");
        await Deno.writeTextFile(`${fx.base}/ours.sk`, ours.toSecretKeyFile(), { mode: 0o600 });
        const cache = `${fx.base}/cache-ours-key`;
        await sh("nix", [
          "--experimental-features",
          "nix-command",
          "copy",
          "--to",
          `file://${cache}?secret-key=${fx.base}/ours.sk&compression=none`,
          fx.hello,
        ], fx.env);
        const written = await narinfos(cache);
        assert.equal(written.length, 1);
        for (const { file, text } of written) {
          const info = parseNarInfo(text, file);
          assert.equal(info.signatures[0].name, "ours-2");
          assert.equal(
            formatSignature(await ours.sign(fingerprint(info))),
            formatSignature(info.signatures[0]),
          );
        }
      });

      await t.step("errors name the key file at fault", async () => {
        await assert.rejects(SigningKey.readFile(fx.publicKeyFile), (e: Error) => {
          assert.ok(e instanceof InvalidRequestError);
          assert.match(e.message, /secret key "test-key-1"/);
          assert.ok(e.message.includes(fx.publicKeyFile), e.message);
          assert.match(e.message, /32 bytes \(want 64\)/);
          return true;
        });
        await assert.rejects(PublicKey.readFile(fx.secretKeyFile), (e: Error) => {
          assert.ok(e.message.includes(fx.secretKeyFile), e.message);
          assert.ok(!e.message.includes(key.toSecretKeyFile().split(":")[1]), "leaks the key");
          return true;
        });
      });
    } finally {
      await Deno.remove(fx.base, { recursive: true });
    }
  },
});
