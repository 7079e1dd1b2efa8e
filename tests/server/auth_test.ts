/**
 * Access control of `nixcas daemon`: `--auth-token-file` (UNAUTHENTICATED without the token),
 * `--public-read`, `--read-only` (PERMISSION_DENIED for every Put), with nothing stored by a
 * refused write (read back to prove it); clients' tokens from `?auth-token-file=` and
 * `NIXCAS_AUTH_TOKEN_FILE`; unix socket modes.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createTransport } from "../../src/backends/grpc/transport.ts";
import { AddressError, parseAddr } from "../../src/backends/open.ts";
import { BlobService } from "../../src/gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { DirectoryService } from "../../src/gen/tvix/castore/protos/rpc_directory_pb.ts";
import { PathInfoService } from "../../src/gen/tvix/store/protos/rpc_pathinfo_pb.ts";
import { NARInfoSchema, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { directoryDigest, makeDirectory, toNodeMessage } from "../../src/castore/directory.ts";
import { blake3Hash } from "../../src/hash/blake3.ts";
import { decode as nixbase32Decode } from "../../src/store/nixbase32.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { nixcas, serviceFlags } from "../prereq.ts";
import { startCliDaemon } from "./cli_daemon.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const HASH = "00bgd045z0d4icpbc2yyz4gx48ak44la";

async function code(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

/** The three kinds of call against `url`, each returning its status. */
function calls(url: string, authToken?: string) {
  const t = createTransport(url, authToken === undefined ? {} : { authToken });
  const blobs = createClient(BlobService, t.transport);
  const dirs = createClient(DirectoryService, t.transport);
  const infos = createClient(PathInfoService, t.transport);
  const dir = makeDirectory({
    symlinks: [{
      $typeName: "tvix.castore.v1.SymlinkNode",
      name: te.encode("l"),
      target: te.encode("t"),
    }],
  });
  const info = create(PathInfoSchema, {
    node: toNodeMessage({
      case: "symlink",
      value: {
        $typeName: "tvix.castore.v1.SymlinkNode",
        name: te.encode(`${HASH}-x`),
        target: te.encode("/nix/store/elsewhere"),
      },
    }),
    narinfo: create(NARInfoSchema, { narSize: 1n, narSha256: new Uint8Array(32) }),
  });
  const data = te.encode("guarded");
  const digest = blake3Hash(data);
  return {
    close: () => t.close(),
    putBlob: () =>
      code(blobs.put((async function* () {
        yield { data };
      })())),
    statBlob: () => code(blobs.stat({ digest })),
    putDir: () =>
      code(dirs.put((async function* () {
        yield dir;
      })())),
    getDir: async () => {
      try {
        let n = 0;
        for await (
          const _ of dirs.get({ byWhat: { case: "digest", value: directoryDigest(dir).bytes } })
        ) n++;
        return n ? "ok" : Code.NotFound;
      } catch (e) {
        return ConnectError.from(e).code;
      }
    },
    putInfo: () => code(infos.put(info)),
    getInfo: () =>
      code(infos.get({ byWhat: { case: "byOutputHash", value: nixbase32Decode(HASH) } })),
    health: () => code(createClient(Health, t.transport).check({ service: "" })),
  };
}

async function withTokens(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-auth-" });
  await Deno.writeTextFile(`${dir}/tokens`, "s3cret-one\n\nsecond-token\n");
  await Deno.writeTextFile(`${dir}/client`, "s3cret-one\n");
  await Deno.writeTextFile(`${dir}/wrong`, "s3cret-onf\n");
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("--auth-token-file: every call needs a token; a refused write stores nothing", () =>
  withTokens(async (dir) => {
    const d = await startCliDaemon(`unix:${dir}/d.sock`, ["--auth-token-file", `${dir}/tokens`]);
    try {
      for (
        const [who, c] of [["no token", calls(d.url)], [
          "wrong token",
          calls(d.url, "s3cret-onf"),
        ]] as const
      ) {
        try {
          for (
            const call of [
              "putBlob",
              "putDir",
              "putInfo",
              "statBlob",
              "getDir",
              "getInfo",
              "health",
            ] as const
          ) {
            assert.equal(await c[call](), Code.Unauthenticated, `${who}: ${call}`);
          }
        } finally {
          c.close();
        }
      }
      // A token from the address, then from the environment: the refused writes stored nothing.
      const ok = calls(`${d.url}?auth-token-file=${dir}/client`);
      try {
        assert.equal(await ok.statBlob(), Code.NotFound);
        assert.equal(await ok.getDir(), Code.NotFound);
        assert.equal(await ok.getInfo(), Code.NotFound);
        assert.equal(await ok.health(), "ok");
        assert.equal(await ok.putBlob(), "ok");
        assert.equal(await ok.statBlob(), "ok");
      } finally {
        ok.close();
      }
      Deno.env.set("NIXCAS_AUTH_TOKEN_FILE", `${dir}/client`);
      try {
        const env = calls(d.url);
        try {
          assert.equal(await env.putDir(), "ok");
          assert.equal(await env.getDir(), "ok");
        } finally {
          env.close();
        }
      } finally {
        Deno.env.delete("NIXCAS_AUTH_TOKEN_FILE");
      }
      const second = calls(d.url, "second-token");
      try {
        assert.equal(await second.putInfo(), "ok");
      } finally {
        second.close();
      }
      // The CLI takes the parameter in its service addresses.
      const flags = serviceFlags(`${d.url}?auth-token-file=${dir}/client`);
      const listed = await nixcas(["list", ...flags]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(td.decode(listed.stdout), new RegExp(HASH));
      const refused = await nixcas(["list", ...serviceFlags(d.url)]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /authorization required/);
    } finally {
      const s = await d.stop();
      assert.equal(s.code, 0, d.stderr());
    }
  }));

Deno.test("--public-read: reads without a token, writes need it", () =>
  withTokens(async (dir) => {
    const d = await startCliDaemon(`unix:${dir}/d.sock`, [
      "--auth-token-file",
      `${dir}/tokens`,
      "--public-read",
    ]);
    try {
      const anon = calls(d.url);
      const owner = calls(d.url, "s3cret-one");
      try {
        assert.equal(await anon.putBlob(), Code.Unauthenticated);
        assert.equal(await anon.putDir(), Code.Unauthenticated);
        assert.equal(await anon.putInfo(), Code.Unauthenticated);
        assert.equal(await anon.statBlob(), Code.NotFound); // a read, answered, and nothing stored
        assert.equal(await anon.health(), "ok");
        assert.equal(await owner.putBlob(), "ok");
        assert.equal(await anon.statBlob(), "ok");
      } finally {
        anon.close();
        owner.close();
      }
    } finally {
      await d.stop();
    }
  }));

Deno.test("--read-only: every Put is PERMISSION_DENIED, reads work, nothing changes", () =>
  withTokens(async (dir) => {
    const d = await startCliDaemon(`unix:${dir}/d.sock`, ["--read-only"]);
    try {
      const c = calls(d.url);
      try {
        assert.equal(await c.putBlob(), Code.PermissionDenied);
        assert.equal(await c.putDir(), Code.PermissionDenied);
        assert.equal(await c.putInfo(), Code.PermissionDenied);
        assert.equal(await c.statBlob(), Code.NotFound);
        assert.equal(await c.getDir(), Code.NotFound);
        assert.equal(await c.getInfo(), Code.NotFound);
        assert.equal(await c.health(), "ok");
      } finally {
        c.close();
      }
    } finally {
      await d.stop();
    }
  }));

Deno.test("unix socket mode: 0660 by default, --socket-mode sets it", () =>
  withTokens(async (dir) => {
    for (const [args, mode] of [[[], 0o660], [["--socket-mode", "0600"], 0o600]] as const) {
      const d = await startCliDaemon(`unix:${dir}/d.sock`, [...args]);
      try {
        assert.equal((await Deno.stat(`${dir}/d.sock`)).mode! & 0o777, mode);
      } finally {
        await d.stop();
      }
    }
    const bad = await nixcas(["daemon", "-l", `unix:${dir}/d.sock`, "--socket-mode", "rw"]);
    assert.equal(bad.code, 1); // a usage error
    assert.match(bad.stderr, /socket-mode/);
  }));

Deno.test("grpc+ addresses take exactly one parameter, auth-token-file=/abs/path", () => {
  assert.deepEqual(parseAddr("grpc+https://h:1?auth-token-file=/t"), {
    kind: "grpc",
    url: "https://h:1",
    authTokenFile: "/t",
  });
  assert.deepEqual(parseAddr("grpc+unix:///s?auth-token-file=/t"), {
    kind: "grpc",
    url: "http://localhost",
    unixPath: "/s",
    authTokenFile: "/t",
  });
  for (
    const a of [
      "grpc+http://h:1?x=1",
      "grpc+http://h:1?auth-token-file=rel",
      "grpc+http://h:1?auth-token-file=/a&auth-token-file=/b",
      "sqlite:///x.db?auth-token-file=/t",
    ]
  ) assert.throws(() => parseAddr(a), AddressError, a);
});
