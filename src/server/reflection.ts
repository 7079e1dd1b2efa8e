/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so generic tools (grpcurl,
 * grpcui) can list and call the daemon's services. `@connectrpc/grpcreflect` is not on npm, so
 * this is a small implementation over the generated file descriptors.
 *
 * @module
 */
import {
  create,
  createRegistry,
  type DescFile,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageShape,
  toBinary,
} from "npm:@bufbuild/protobuf@2.17.0";
import { FileDescriptorProtoSchema } from "npm:@bufbuild/protobuf@2.17.0/wkt";
import type { ConnectRouter } from "npm:@connectrpc/connect@2.2.0";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.ts";

// grpc status codes used in ErrorResponse (numbers as in google.rpc.Code).
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

/**
 * Registers the reflection service (both versions) on a router, describing `services` and the
 * reflection service itself.
 */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const all = [...services, v1.ServerReflection];
  const byName = new Map<string, DescFile>();
  const collect = (f: DescFile) => {
    if (byName.has(f.proto.name)) return;
    byName.set(f.proto.name, f);
    f.dependencies.forEach(collect);
  };
  all.forEach((s) => collect(s.file));
  const registry = createRegistry(...byName.values());
  const names = all.map((s) => s.typeName);
  const encoded = new Map<string, Uint8Array>();
  const encode = (f: DescFile) => {
    let b = encoded.get(f.proto.name);
    if (!b) {
      b = toBinary(FileDescriptorProtoSchema, f.proto);
      encoded.set(f.proto.name, b);
    }
    return b;
  };
  // A file and everything it imports, file first, each once (grpcurl resolves imports locally).
  const withDeps = (f: DescFile) => {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (x: DescFile) => {
      if (seen.has(x.name)) return;
      seen.add(x.name);
      out.push(encode(x));
      x.dependencies.forEach(visit);
    };
    visit(f);
    return out;
  };
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const d = registry.get(symbol);
    if (d) return d.file;
    // "pkg.Service.Method" names a method: look up its service.
    const dot = symbol.lastIndexOf(".");
    if (dot > 0) return registry.getService(symbol.slice(0, dot))?.file;
    return undefined;
  };

  const answer = (req: Request): Response => {
    const base = { validHost: req.host, originalRequest: req };
    const files = (f: DescFile | undefined, what: string) =>
      f
        ? create(v1.ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "fileDescriptorResponse",
            value: { fileDescriptorProto: withDeps(f) },
          },
        })
        : error(base, NOT_FOUND, `${what} not found`);
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return create(v1.ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: { service: names.map((name) => ({ name })) },
          },
        });
      case "fileByFilename":
        return files(byName.get(r.value), `file ${r.value}`);
      case "fileContainingSymbol":
        return files(fileOfSymbol(r.value), `symbol ${r.value}`);
      case "fileContainingExtension":
        return error(base, NOT_FOUND, "no extensions");
      case "allExtensionNumbersOfType":
        return registry.getMessage(r.value)
          ? create(v1.ServerReflectionResponseSchema, {
            ...base,
            messageResponse: {
              case: "allExtensionNumbersResponse",
              value: { baseTypeName: r.value, extensionNumber: [] },
            },
          })
          : error(base, NOT_FOUND, `type ${r.value} not found`);
      default:
        return error(base, UNIMPLEMENTED, "empty request");
    }
  };

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(reqs) {
      for await (const req of reqs) yield answer(req);
    },
  });
  // v1alpha has the same messages under another package: convert through the wire format.
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(reqs) {
      for await (const req of reqs) {
        const r = fromBinaryAs(
          v1.ServerReflectionRequestSchema,
          v1alpha.ServerReflectionRequestSchema,
          req,
        );
        const resp = answer(r);
        yield fromBinaryAs(
          v1alpha.ServerReflectionResponseSchema,
          v1.ServerReflectionResponseSchema,
          resp,
        );
      }
    },
  });
}

function error(
  base: Pick<Response, "validHost" | "originalRequest">,
  code: number,
  message: string,
): Response {
  return create(v1.ServerReflectionResponseSchema, {
    ...base,
    messageResponse: { case: "errorResponse", value: { errorCode: code, errorMessage: message } },
  });
}

function fromBinaryAs<To extends DescMessage, From extends DescMessage>(
  to: To,
  from: From,
  msg: MessageShape<From>,
): MessageShape<To> {
  return fromBinary(to, toBinary(from, msg));
}
