/**
 * The pack file shared by several processes: space handed out to one is never handed to
 * another, so blobs written at the same time all read back intact; space they give back (copies
 * of blobs stored already) costs nothing.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { readBlob } from "../../src/castore/blob_util.ts";
import { B3Digest } from "../../src/castore/digest.ts";
import { livePackBytes } from "./rows.ts";

const CHILD = new URL("./pack_writer_child.ts", import.meta.url).pathname;

Deno.test("two processes writing large blobs into one store at once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/shared.db`;
  try {
    // Create the schema first, so the children only race on writing.
    await new SqliteBlobService(path).close();
    const run = (seed: number) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", CHILD, path, String(seed), "12"],
        stdin: "null",
      }).output();
    const outs = await Promise.all([run(1), run(2)]);
    for (const o of outs) assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    const used = () => {
      const db = new DatabaseSync(path, { readOnly: true });
      const one = (sql: string) => Object.values(db.prepare(sql).get()!)[0] as number;
      const r = {
        used: one("SELECT used FROM pack"),
        free: one("SELECT coalesce(sum(length), 0) FROM pack_free"),
        live: livePackBytes(db),
      };
      db.close();
      return r;
    };
    const first = used();
    assert.equal(first.live, 24 * 2.5 * 1024 * 1024);
    assert.equal(first.used, first.live + first.free);
    // Both again, at once: every blob is a copy, so the pack does not grow.
    const copies = await Promise.all([run(1), run(2)]);
    for (const o of copies) assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    const second = used();
    assert.equal(second.used, first.used);
    assert.equal(second.used, second.live + second.free);
    const blobs = new SqliteBlobService(path);
    try {
      for (const [k, o] of outs.entries()) {
        const digests = new TextDecoder().decode(o.stdout).trim().split("\n");
        assert.equal(digests.length, 12);
        for (const [i, d] of digests.entries()) {
          const got = await readBlob(blobs, B3Digest.parse(d));
          assert.equal(got.length, 2.5 * 1024 * 1024);
          assert.ok(got.every((b) => b === (k + 1) * 16 + i), `blob ${i} of writer ${k + 1}`);
        }
      }
    } finally {
      await blobs.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
