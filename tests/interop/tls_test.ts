/**
 * `grpc+https://`: the CLI imports a tree through a python grpcio server speaking TLS and reads
 * it back; the server's CA comes from `NIX_SSL_CERT_FILE`. Without that CA the connection is
 * refused with an error naming the address.
 */
import assert from "node:assert/strict";
import { have, nixcas, serviceFlags } from "../prereq.ts";
import { generateStubs, havePythonGrpc, startPyServer } from "./pystubs.ts";
import { makeCerts } from "./certs.ts";

const enabled = havePythonGrpc() && have("grpc+https tests", ["openssl"]);
const td = new TextDecoder();

Deno.test({
  name: "grpc+https: import and read back through a TLS server, CA from NIX_SSL_CERT_FILE",
  ignore: !enabled,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-tls-" });
    const { ca, cert, key } = await makeCerts(tmp);
    const server = await startPyServer(await generateStubs(), "127.0.0.1:0", ["--tls", cert, key]);
    try {
      const port = server.address.split(":").at(-1);
      const addr = `grpc+https://localhost:${port}`;
      const flags = serviceFlags(addr);
      await Deno.mkdir(`${tmp}/tree/sub`, { recursive: true });
      await Deno.writeTextFile(`${tmp}/tree/sub/file`, "over TLS\n");
      const env = { NIX_SSL_CERT_FILE: ca };
      const imported = await nixcas(["import", "--quiet", ...flags, `${tmp}/tree`], { env });
      assert.equal(imported.code, 0, imported.stderr);
      const path = td.decode(imported.stdout).trim();
      const local = await nixcas(["import", "--quiet", `${tmp}/tree`], {
        env: { NIXCAS_DIR: `${tmp}/local` },
      });
      assert.equal(path, td.decode(local.stdout).trim());
      const cat = await nixcas(["cat", ...flags, `${path}/sub/file`], { env });
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(td.decode(cat.stdout), "over TLS\n");

      // A CA that did not sign the server's certificate: refused, and the error names the address.
      const refused = await nixcas(["list", ...flags], { env: { NIX_SSL_CERT_FILE: cert } });
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        new RegExp(`${addr.replaceAll("+", "\\+")}.*(certificate|verify)`),
      );
    } finally {
      await server.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
