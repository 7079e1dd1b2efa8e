/**
 * Concurrent iteration of an SQLite store: every `list()` owns its own reading, so consumers
 * that interleave (awaiting between items, as the daemon's streaming List and the FUSE
 * `--list-root` readdir do) all see the whole list: in the library, through a daemon, and
 * through a mount.
 */
import assert from "node:assert/strict";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import type { AnyNode } from "../../src/castore/directory.ts";
import { SqliteDirectoryService } from "../../src/backends/sqlite/directory.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { makePathInfo } from "../../src/store/path_info.ts";
import { GrpcPathInfoService } from "../../src/backends/grpc/path_info.ts";
import type { PathInfoService } from "../../src/store/path_info_service.ts";
import { SqlitePathInfoService } from "../../src/backends/sqlite/path_info.ts";
import { sourceStorePath } from "../../src/store/store_path.ts";
import { readMountInfo } from "../../src/fuse/mount.ts";
import { have, run, startNixcas } from "../prereq.ts";

const ENTRIES = 300;

/** A store at `path` with {@linkcode ENTRIES} path infos; returns their store paths, sorted. */
async function fill(path: string) {
  const blobs = new SqliteBlobService(path);
  const directories = new SqliteDirectoryService(path);
  const pathInfos = new SqlitePathInfoService(path, blobs, directories);
  const enc = new TextEncoder();
  const names: string[] = [];
  for (let i = 0; i < ENTRIES; i++) {
    const node: AnyNode = {
      case: "symlink",
      value: {
        $typeName: "tvix.castore.v1.SymlinkNode",
        name: enc.encode(`l${i}`),
        target: enc.encode(`/target/${i}`),
      },
    };
    const { narSize, narSha256 } = await pathInfos.calculateNar(node);
    const storePath = sourceStorePath(`l${i}`, narSha256);
    await pathInfos.put(makePathInfo({ storePath, node, narSize, narSha256 }));
    names.push(storePath.absolute);
  }
  return { blobs, directories, pathInfos, names: names.sort() };
}

/** 80 consumers of `list()` at once, each yielding to the others between items. */
async function listConcurrently(pathInfos: PathInfoService, consumers = 80) {
  return await Promise.allSettled(
    Array.from({ length: consumers }, async (_, k) => {
      const got: string[] = [];
      for await (const info of pathInfos.list()) {
        got.push(new TextDecoder().decode(info.node!.node.value!.name));
        // Different consumers advance at different paces.
        if ((got.length + k) % 3 === 0) await new Promise((r) => setTimeout(r, 0));
        else await Promise.resolve();
      }
      return got;
    }),
  );
}

function assertAllComplete(
  results: PromiseSettledResult<string[]>[],
  count: number,
): void {
  const failed = results.filter((r) => r.status === "rejected");
  assert.equal(
    failed.length,
    0,
    `${failed.length} of ${results.length} failed: ${(failed[0] as PromiseRejectedResult)?.reason}`,
  );
  for (const r of results) {
    assert.equal((r as PromiseFulfilledResult<string[]>).value.length, count);
  }
}

Deno.test("80 interleaved list() consumers on one SqlitePathInfoService all get everything", async () => {
  const dir = await Deno.makeTempDir();
  const s = await fill(`${dir}/store.db`);
  try {
    const results = await listConcurrently(s.pathInfos);
    assertAllComplete(results, ENTRIES);
    // Same order for everyone (by digest), and every entry once.
    const first = (results[0] as PromiseFulfilledResult<string[]>).value;
    assert.equal(new Set(first).size, ENTRIES);
    for (const r of results) assert.deepEqual((r as PromiseFulfilledResult<string[]>).value, first);
  } finally {
    await s.pathInfos.close();
    await s.directories.close();
    await s.blobs.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a list() consumer abandoned half way does not disturb the next", async () => {
  const dir = await Deno.makeTempDir();
  const s = await fill(`${dir}/store.db`);
  try {
    let n = 0;
    for await (const _ of s.pathInfos.list()) if (++n === 10) break;
    const results = await listConcurrently(s.pathInfos, 4);
    assertAllComplete(results, ENTRIES);
  } finally {
    await s.pathInfos.close();
    await s.directories.close();
    await s.blobs.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("80 concurrent List calls through a daemon backed by SQLite all complete", async () => {
  const dir = await Deno.makeTempDir();
  const s = await fill(`${dir}/store.db`);
  const daemon = await serveDaemon({
    listen: `unix:${dir}/d.sock`,
    blobs: s.blobs,
    directories: s.directories,
    pathInfos: s.pathInfos,
    log: () => {},
  });
  const client = new GrpcPathInfoService(`grpc+unix://${dir}/d.sock`);
  try {
    assertAllComplete(await listConcurrently(client), ENTRIES);
  } finally {
    await client.close();
    await daemon.close();
    await s.pathInfos.close();
    await s.directories.close();
    await s.blobs.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "20 concurrent ls of a --list-root mount of an SQLite store all list everything",
  ignore: !have("FUSE list test", ["ls"], ["/dev/fuse"]),
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const env = { NIXCAS_DIR: `${dir}/store` };
    await Deno.mkdir(env.NIXCAS_DIR);
    const s = await fill(`${env.NIXCAS_DIR}/store.db`);
    await s.pathInfos.close();
    await s.directories.close();
    await s.blobs.close();
    const mnt = `${dir}/mnt`;
    await Deno.mkdir(mnt);
    const { child } = await startNixcas(["mount", "--list-root", mnt], "mounted the store", env);
    try {
      const expected = s.names.map((n) => n.slice("/nix/store/".length)).sort();
      // -f: unsorted, as readdir returns them; each ls is its own process.
      const outs = await Promise.all(Array.from({ length: 20 }, () => run("ls", ["-f", mnt])));
      const failed = outs.filter((o) => o.code !== 0);
      assert.equal(failed.length, 0, `${failed.length} of 20 failed: ${failed[0]?.stderr}`);
      for (const o of outs) {
        const names = new TextDecoder().decode(o.stdout).split("\n").filter((n) =>
          n && n !== "." && n !== ".."
        );
        assert.deepEqual(names.sort(), expected);
      }
    } finally {
      child.kill("SIGTERM");
      await child.status;
      if (readMountInfo().some((m) => m.mountpoint === mnt)) await run("umount", ["-l", mnt]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
