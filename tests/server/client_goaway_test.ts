/**
 * A client survives its daemon stopping: the daemon's GOAWAY after a large upload used to crash
 * Deno's `node:http2` client (denoland/deno#36788), taking the whole process down. The client
 * runs in a child process, so a crash fails this test instead of ending the test run.
 */
import assert from "node:assert/strict";
import { slow } from "../prereq.ts";

const CHILD = new URL("./client_goaway_child.ts", import.meta.url).pathname;

for (const transport of ["tcp", "unix"]) {
  Deno.test(`a client survives 5 daemons stopping after its uploads (${transport})`, {
    ignore: slow(),
  }, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", CHILD, "5", transport, dir],
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `client exited with ${out.code}:\n${text.slice(-2000)}`);
      assert.match(text, /survived/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
