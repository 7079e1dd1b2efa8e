/**
 * `grpc+https://`: the CLI imports a tree through a python grpcio server speaking TLS and reads
 * it back; the server's CA comes from `NIX_SSL_CERT_FILE`. Without that CA the connection is
 * refused with an error naming the address.
 */
import assert from "node:assert/strict";
import { have, nixcas, run, serviceFlags } from "../prereq.ts";
import { generateStubs, havePythonGrpc, startPyServer } from "./pystubs.ts";

const enabled = havePythonGrpc() && have("grpc+https tests", ["openssl"]);
const td = new TextDecoder();

/** A throw-away CA and a server certificate for localhost signed by it. */
async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ssl = async (args: string[]) => {
    const r = await run("openssl", args, { cwd: dir });
    if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  await ssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=nixcas test CA",
  ]);
  await ssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "srv.key",
    "-out",
    "srv.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await ssl([
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/srv.pem`, key: `${dir}/srv.key` };
}

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
