/**
 * `nixcas import` against real Nix: for trees built here, the printed store path equals
 * `nix-store --add`, `nixcas nar` equals `nix-store --dump`, and the NAR hash equals `nix-hash`.
 * Bad input exits non-zero with one line naming the culprit and writes no PathInfo.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AT_FDCWD, createFileAt, mkdirAt, mkfifoAt, symlinkAt } from "../../src/sys/libc.ts";
import { have, nixcas, run, slow } from "../prereq.ts";

const NIX = have("nix oracle tests", ["nix-store", "nix-hash"]);
const te = new TextEncoder();
const td = new TextDecoder();
const b = (s: string | number[]) => typeof s === "string" ? te.encode(s) : new Uint8Array(s);
const join = (...parts: (string | Uint8Array)[]) => {
  const bytes = parts.map((p) => typeof p === "string" ? te.encode(p) : p);
  const out: number[] = [];
  bytes.forEach((p, i) => {
    if (i > 0) out.push(0x2f);
    out.push(...p);
  });
  return new Uint8Array(out);
};
const file = (path: Uint8Array, data: string | Uint8Array = "", mode = 0o644) =>
  createFileAt(AT_FDCWD, path, typeof data === "string" ? te.encode(data) : data, mode);
const dir = (path: Uint8Array) => mkdirAt(AT_FDCWD, path);

/** Builds every tree the issue lists under `base`; returns their paths. */
function buildTrees(base: string): string[] {
  const trees: string[] = [];
  const add = (name: string) => {
    trees.push(`${base}/${name}`);
    return b(`${base}/${name}`);
  };
  file(add("empty-file"));
  file(add("exec-0744"), "#!/bin/sh\necho hi\n", 0o744);
  file(add("not-exec-0645"), "data", 0o645);
  file(add("private-0700"), "x", 0o700);
  symlinkAt(b("/nix/store/somewhereelse"), AT_FDCWD, add("root-symlink"));
  symlinkAt(b("does/not/exist"), AT_FDCWD, add("dangling-root"));
  dir(add("empty-dir"));

  const mixed = add("mixed");
  dir(mixed);
  file(join(mixed, "a"), "a");
  file(join(mixed, "run"), "#!/bin/sh\n", 0o755);
  symlinkAt(b("/etc/hostname"), AT_FDCWD, join(mixed, "abs-link"));
  symlinkAt(b("../nowhere"), AT_FDCWD, join(mixed, "dangling"));
  dir(join(mixed, "empty"));
  dir(join(mixed, "n1"));
  dir(join(mixed, "n1", "n2"));
  dir(join(mixed, "n1", "n2", "n3"));
  file(join(mixed, "n1", "n2", "n3", "deep"), "deep");
  // Names that sort trickily: byte order, not locale order.
  for (const n of ["a-", "a.", "a0", "B", "Z", "_", "é", "aa", "a\u00e9", "A"]) {
    file(join(mixed, "s" + n), n);
  }

  const raw = add("non-utf8");
  dir(raw);
  file(join(raw, b([0x66, 0xff, 0xfe])), "latin1-ish");
  dir(join(raw, b([0xc3, 0x28])));
  file(join(raw, b([0xc3, 0x28]), b([0x80])), "x");
  symlinkAt(b([0x2f, 0xff, 0x41]), AT_FDCWD, join(raw, "link-to-raw"));

  const many = add("many-files");
  dir(many);
  for (let d = 0; d < 30; d++) {
    dir(join(many, `d${d}`));
    for (let f = 0; f < 100; f++) {
      file(join(many, `d${d}`, `f${f}`), `${d}/${f}`, f % 7 ? 0o644 : 0o755);
    }
  }

  const big = add("big-file");
  const data = new Uint8Array(40 << 20);
  for (let o = 0; o < data.length; o += 65536) data[o] = (o >> 16) & 0xff;
  data[data.length - 1] = 1;
  file(big, data);

  // A big file sorting before many small ones: their contents wait behind it for the NAR hash
  // (more than the importer holds at once, so the walk has to wait for the upload).
  const behind = add("big-then-small");
  dir(behind);
  file(join(behind, "0-big"), data.subarray(0, 24 << 20));
  for (let f = 0; f < 700; f++) {
    const small = new Uint8Array(60_000);
    small.fill(f & 0xff);
    small[f] = 0xaa;
    file(join(behind, `s${f}`), small);
  }
  return trees;
}

Deno.test({
  name: "import equals nix-store --add, nar equals nix-store --dump, hash equals nix-hash",
  ignore: !NIX || slow(),
  async fn() {
    const base = await Deno.makeTempDir({ prefix: "nixcas-oracle-" });
    try {
      dir(b(`${base}/src`));
      const trees = buildTrees(`${base}/src`);
      const env = { NIXCAS_DIR: `${base}/nixcas` };
      const ours = await nixcas(["import", "--quiet", ...trees], { env });
      assert.equal(ours.code, 0, ours.stderr);
      const oursPaths = td.decode(ours.stdout).trim().split("\n");
      const nix = await run("nix-store", ["--add", ...trees], {
        env: { NIX_REMOTE: `local?root=${base}/nixroot` },
      });
      assert.equal(nix.code, 0, nix.stderr);
      assert.deepEqual(oursPaths, td.decode(nix.stdout).trim().split("\n"));

      for (let i = 0; i < trees.length; i++) {
        const dump = await run("nix-store", ["--dump", trees[i]]);
        const nar = await nixcas(["nar", oursPaths[i]], { env });
        assert.equal(nar.code, 0, nar.stderr);
        assert.equal(nar.stdout.length, dump.stdout.length, `NAR size of ${trees[i]}`);
        assert.ok(
          Buffer.from(nar.stdout).equals(Buffer.from(dump.stdout)),
          `NAR bytes of ${trees[i]}`,
        );
        const hash = td.decode(
          (await run("nix-hash", ["--type", "sha256", "--base32", trees[i]])).stdout,
        ).trim();
        const [info] = JSON.parse(
          td.decode((await nixcas(["path-info", "--json", oursPaths[i]], { env })).stdout),
        );
        assert.equal(info.narHash, `sha256:${hash}`, trees[i]);
        // Content-addressed as nix-store --add registers it.
        assert.equal(info.ca, `fixed:r:sha256:${hash}`, trees[i]);
        assert.equal(info.narSize, dump.stdout.length);
        assert.equal(info.path, oursPaths[i]);
      }
      // list shows every imported path.
      const list = td.decode((await nixcas(["list"], { env })).stdout).trim().split("\n").sort();
      assert.deepEqual(list, [...oursPaths].sort());
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test("bad input: one-line errors naming the culprit, nothing registered", async () => {
  const base = await Deno.makeTempDir({ prefix: "nixcas-bad-" });
  try {
    const env = { NIXCAS_DIR: `${base}/nixcas` };
    dir(b(`${base}/withfifo`));
    file(b(`${base}/withfifo/ok`), "fine");
    mkfifoAt(AT_FDCWD, b(`${base}/withfifo/pipe`));
    mkfifoAt(AT_FDCWD, b(`${base}/rootfifo`));
    dir(b(`${base}/withsock`));
    const sock = Deno.listen({ transport: "unix", path: `${base}/withsock/sock` });
    file(b(`${base}/good`), "good");
    const cases: [string, RegExp][] = [
      [`${base}/withfifo`, /fifo.*withfifo\/pipe/],
      [`${base}/rootfifo`, /fifo.*rootfifo/],
      [`${base}/withsock`, /socket.*withsock\/sock/],
      [`${base}/missing`, /ENOENT.*missing/],
      [`${base}/bad name`, /invalid.*bad name/],
      [`${base}/.hidden-but-ok-name`, /ENOENT/],
    ];
    try {
      for (const [path, want] of cases) {
        const r = await nixcas(["import", "--quiet", path], { env });
        assert.notEqual(r.code, 0, path);
        const lines = r.stderr.trim().split("\n");
        assert.match(lines[0], want, r.stderr);
        assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace: ${r.stderr}`);
      }
      // Other paths still import, and the failure is reported after them.
      const mixed = await nixcas(["import", "--quiet", `${base}/withfifo`, `${base}/good`], {
        env,
      });
      assert.equal(mixed.code, 1);
      assert.match(td.decode(mixed.stdout), /^\/nix\/store\/[a-z0-9]{32}-good\n$/);
      const list = td.decode((await nixcas(["list"], { env })).stdout);
      assert.equal(list.trim().split("\n").length, 1, list);
      assert.match(list, /-good$/m);
    } finally {
      sock.close();
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("unknown address schemes and relative paths are refused clearly", async () => {
  for (
    const [addr, want] of [
      ["foo://x", /unknown scheme "foo"/],
      ["sqlite://host/x.db", /takes no host/],
      ["sqlite:rel.db", /sqlite:\/\/\//],
      ["memory://x", /takes no host/],
    ]
  ) {
    const r = await nixcas(["list", "--blob-service-addr", addr as string]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, want as RegExp);
  }
});
