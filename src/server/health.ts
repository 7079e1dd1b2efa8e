/**
 * The standard gRPC health service (`grpc.health.v1.Health`, Check and Watch), so that load
 * balancers, orchestrators and `grpc_health_probe` can ask the daemon whether it serves.
 *
 * @module
 */
import type { ConnectRouter, HandlerContext } from "npm:@connectrpc/connect@2.2.0";
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import {
  Health,
  type HealthCheckRequest,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb.ts";

export { Health as HealthServiceDesc };

/** The daemon's health: one status for the server ("") and every service it names. */
export class HealthState {
  #names: Set<string>;
  #serving = true;
  #watchers = new Set<() => void>();

  /** `services`: the fully qualified service names that report a status besides "". */
  constructor(services: string[]) {
    this.#names = new Set(["", ...services]);
  }

  /** The status of `service`, or null for a name the daemon does not know. */
  status(service: string): Status | null {
    if (!this.#names.has(service)) return null;
    return this.#serving ? Status.SERVING : Status.NOT_SERVING;
  }

  /** Reports NOT_SERVING from now on and ends every Watch (the daemon is stopping). */
  shutdown(): void {
    this.#serving = false;
    for (const w of [...this.#watchers]) w();
  }

  /** True once {@linkcode HealthState.shutdown} was called. */
  get stopped(): boolean {
    return !this.#serving;
  }

  /** Calls `fn` on every change; returns the function that stops it. */
  watch(fn: () => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }
}

/** Registers `grpc.health.v1.Health` on a router, answering from `state`. */
export function registerHealth(router: ConnectRouter, state: HealthState): void {
  router.service(Health, {
    check(req: HealthCheckRequest) {
      const status = state.status(req.service);
      if (status === null) {
        throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      }
      return { status };
    },
    async *watch(req: HealthCheckRequest, ctx: HandlerContext) {
      let wake: (() => void) | null = null;
      const notify = () => {
        const w = wake;
        wake = null;
        w?.();
      };
      const unwatch = state.watch(notify);
      ctx.signal.addEventListener("abort", notify);
      try {
        let last: Status | undefined;
        for (;;) {
          const status = state.status(req.service) ?? Status.SERVICE_UNKNOWN;
          if (status !== last) {
            yield { status };
            last = status;
          }
          // A stopping daemon ends its watches (after saying NOT_SERVING): clients retry
          // elsewhere, and the shutdown need not wait for them.
          if (state.stopped || ctx.signal.aborted) return;
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        unwatch();
        ctx.signal.removeEventListener("abort", notify);
      }
    },
  });
}
