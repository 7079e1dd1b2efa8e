/**
 * What both ends of an HTTP/2 connection do alike, as a base for the client's connection and the
 * server's: streams' received data and its flow control (windows given back as the data is
 * taken), sending headers and data within the peer's windows, the peer's SETTINGS, PING and
 * WINDOW_UPDATE. The subclasses add what differs: opening streams, header blocks, resets, GOAWAY.
 *
 * @module
 */
import {
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER,
  frameHeader,
  FrameType,
  MAX_WINDOW,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";
import {
  FrameReader,
  type FrameSink,
  FrameWriter,
  Http2Error,
  protocolError,
} from "./connection.ts";

/** Queued output, beyond which control frames owed to a peer that does not read end it. */
const MAX_QUEUED_CONTROL = 4 << 20;
/** A read asks for at least this much room; with less left, a new buffer is begun. */
const MIN_READ = 64 << 10;

/** A stream's state shared by both ends: received data, windows, ends. */
export class PeerStream {
  /** The stream id. */
  readonly id: number;
  /** Received data not yet taken. */
  pieces: Uint8Array[] = [];
  /** Bytes in {@linkcode PeerStream.pieces}. */
  queued = 0;
  /** The peer ended its side (END_STREAM). */
  remoteEnded = false;
  /** We ended our side. */
  localEnded = false;
  /** Why the stream failed, once it has. */
  error: Http2Error | null = null;
  /** Wakes a reader waiting for data. */
  wake: (() => void) | null = null;
  /** Our send window. */
  sendWindow: number;
  /** Our receive window: what the peer may still send. */
  recvWindow: number;
  /** Received bytes taken but not yet given back by WINDOW_UPDATE. */
  unacked = 0;
  /** Gone from the connection's table (both ends done, or reset). */
  closed = false;

  /** A stream with the peer's initial window and ours. */
  constructor(id: number, sendWindow: number, recvWindow: number) {
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Wakes a waiting reader. */
  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The received data as it arrives, each piece given back to the windows once taken. */
  async *received(peer: Http2Peer<PeerStream>): AsyncGenerator<Uint8Array> {
    for (;;) {
      const piece = this.pieces.shift();
      if (piece !== undefined) {
        this.queued -= piece.length;
        peer.consumed(this, piece.length);
        yield piece;
        continue;
      }
      if (this.remoteEnded) return;
      if (this.error) throw this.error;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Drops what was received and not taken; returns its size (for the connection window). */
  drop(): number {
    const n = this.queued;
    this.pieces = [];
    this.queued = 0;
    return n;
  }
}

/** Receive windows and limits of one end. */
export interface PeerOptions {
  /** Our receive window per stream. */
  streamWindow: number;
  /** Our receive window for the connection. */
  connectionWindow: number;
  /** Largest frame we accept. */
  maxFrame: number;
  /** Largest header block we accept. */
  maxHeaderBlock: number;
  /**
   * Size of the buffer reads fill (a new one when less than 64 KiB is left): frames of up to
   * about this size arrive in one piece of memory, which lets a message spread over reads be
   * handed on without a copy.
   */
  readBuffer: number;
}

/** One end of an HTTP/2 connection; `S` is its stream type. */
export abstract class Http2Peer<S extends PeerStream> {
  protected readonly sock: Deno.Conn;
  protected readonly writer: FrameWriter;
  protected readonly reader: FrameReader;
  protected readonly streams: Map<number, S> = new Map();
  protected readonly local: PeerOptions;
  protected peerMaxFrame = 16384;
  protected peerInitialWindow = 65535;
  protected connSendWindow = 65535;
  protected connRecvWindow = 65535;
  #connUnacked = 0;
  #sendWaiters: (() => void)[] = [];
  #dataStream: S | null = null;
  // Reads fill one buffer from the front; bytes handed out as DATA views stay where they are
  // (the next read goes after them), other bytes are read over.
  #arena: Uint8Array;
  #arenaUsed = 0;
  #decoder = new HpackDecoder();

  /** Starts on `sock`; `onWriteError` is called once if a write fails. */
  constructor(sock: Deno.Conn, local: PeerOptions, onWriteError: (e: unknown) => void) {
    this.sock = sock;
    this.local = local;
    this.#arena = new Uint8Array(local.readBuffer);
    // Small frames (WINDOW_UPDATE, PING, headers) must not wait for Nagle's algorithm.
    (sock as Partial<Deno.TcpConn>).setNoDelay?.(true);
    this.writer = new FrameWriter(sock, onWriteError);
    this.reader = new FrameReader(this.#sink(), local.maxFrame, local.maxHeaderBlock);
  }

  /** True once the connection has ended: nothing more is sent. */
  protected abstract get ended(): boolean;
  /** The stream that takes a DATA frame of `length` bytes on `sid`, or null to drop it. */
  protected abstract dataFor(sid: number, length: number): S | null;
  /** A complete header block arrived. */
  protected abstract headerBlock(sid: number, flags: number, block: Uint8Array): void;
  /** A frame other than DATA, HEADERS, SETTINGS, PING, WINDOW_UPDATE and PUSH_PROMISE arrived. */
  protected abstract otherFrame(
    type: number,
    flags: number,
    sid: number,
    payload: Uint8Array,
  ): void;
  /** Removes a stream whose both ends are done (or that was reset). */
  protected abstract forget(s: S): void;
  /** A stream's send window passed 2^31-1 (a stream error). */
  protected abstract streamError(s: S, code: number): void;
  /** The peer's SETTINGS were applied (hook: stream limits, waiters). */
  protected settingsApplied(_maxStreams: number | undefined): void {}
  /** A PING we sent was answered. */
  protected pingAnswered(): void {}

  /** Decodes a header block (the connection's HPACK state changes with every block). */
  protected decodeHeaders(block: Uint8Array): HeaderField[] {
    try {
      return this.#decoder.decode(block);
    } catch (e) {
      protocolError((e as Error).message, ErrorCode.COMPRESSION_ERROR);
    }
  }

  /** Queues frames unless the connection has ended. */
  protected send(...parts: Uint8Array[]): void {
    if (!this.ended) this.writer.send(...parts);
  }

  /** A control frame owed to the peer; one that does not read its answers is cut off. */
  protected sendControl(f: Uint8Array): void {
    if (this.writer.queued > MAX_QUEUED_CONTROL) {
      protocolError("too much owed to a peer that does not read", ErrorCode.ENHANCE_YOUR_CALM);
    }
    this.send(f);
  }

  /** Our SETTINGS (with `extra`) and the connection window opened to ours. */
  protected sendSettings(extra: [number, number][]): void {
    this.send(settingsFrame([
      ...extra,
      [Setting.INITIAL_WINDOW_SIZE, this.local.streamWindow],
      [Setting.MAX_FRAME_SIZE, this.local.maxFrame],
      [Setting.MAX_HEADER_LIST_SIZE, this.local.maxHeaderBlock],
    ]));
    if (this.local.connectionWindow > 65535) {
      this.send(windowUpdateFrame(0, this.local.connectionWindow - 65535));
      this.connRecvWindow = this.local.connectionWindow;
    }
  }

  /** Feeds bytes read from the socket (not from the read buffer: the caller's to give away). */
  protected received(data: Uint8Array): void {
    this.reader.push(data);
    this.reader.retained = false;
  }

  /** Reads once from the socket and feeds the frames; the byte count, or null at its end. */
  protected async readSome(): Promise<number | null> {
    if (this.#arena.length - this.#arenaUsed < MIN_READ) {
      this.#arena = new Uint8Array(this.local.readBuffer);
      this.#arenaUsed = 0;
    }
    const space = this.#arena.subarray(this.#arenaUsed);
    const n = await this.sock.read(space);
    if (n === null) return null;
    this.reader.push(space.subarray(0, n));
    if (this.reader.retained) {
      this.#arenaUsed += n;
      this.reader.retained = false;
    }
    return n;
  }

  /** Gives `n` received bytes back to the connection window, in batches. */
  protected credit(n: number): void {
    this.#connUnacked += n;
    if (this.#connUnacked >= this.local.connectionWindow / 2) {
      this.send(windowUpdateFrame(0, this.#connUnacked));
      this.connRecvWindow += this.#connUnacked;
      this.#connUnacked = 0;
    }
  }

  /** A reader took `n` bytes of a stream's data: return them to both windows in batches. */
  consumed(s: PeerStream, n: number): void {
    this.credit(n);
    if (s.remoteEnded || s.closed) return;
    s.unacked += n;
    if (s.unacked >= this.local.streamWindow / 2) {
      this.send(windowUpdateFrame(s.id, s.unacked));
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  /** Drops a stream's untaken data, giving its bytes back to the connection window. */
  protected dropReceived(s: S): void {
    const n = s.drop();
    if (n > 0) this.credit(n);
  }

  /** Sends a header block, in CONTINUATION frames past the peer's frame size. */
  protected sendHeaders(id: number, fields: HeaderField[], endStream: boolean): void {
    const block = encodeHeaders(fields);
    const max = this.peerMaxFrame;
    let o = 0;
    let first = true;
    do {
      const part = block.subarray(o, o + max);
      o += part.length;
      const last = o >= block.length;
      const f = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      this.send(frame(first ? FrameType.HEADERS : FrameType.CONTINUATION, f, id, part));
      first = false;
    } while (o < block.length);
  }

  /**
   * Sends `data` (pieces back to back) on a stream within the flow-control windows (`end`: and
   * ends our side), in frames that may span pieces; with `wait`, resolves once it was written to
   * the socket. Throws if the stream failed or ended.
   */
  async sendData(s: S, data: Uint8Array | Uint8Array[], end: boolean, wait = true): Promise<void> {
    const parts = data instanceof Uint8Array ? [data] : data;
    let left = 0;
    for (const p of parts) left += p.length;
    let pi = 0;
    let po = 0;
    do {
      if (s.error) throw s.error;
      if (this.ended) throw new Http2Error("unavailable", "the connection was closed");
      if (s.closed || s.localEnded) throw new Http2Error("cancelled", "the stream has ended");
      const n = Math.min(left, this.peerMaxFrame, s.sendWindow, this.connSendWindow);
      if (n <= 0 && left > 0) {
        await new Promise<void>((r) => this.#sendWaiters.push(r));
        continue;
      }
      const head = new Uint8Array(FRAME_HEADER);
      frameHeader(head, 0, n, FrameType.DATA, n === left && end ? Flag.END_STREAM : 0, s.id);
      const out: Uint8Array[] = [head];
      for (let k = n; k > 0;) {
        const p = parts[pi];
        const take = Math.min(k, p.length - po);
        out.push(p.subarray(po, po + take));
        po += take;
        k -= take;
        if (po === p.length) {
          pi++;
          po = 0;
        }
      }
      s.sendWindow -= n;
      this.connSendWindow -= n;
      left -= n;
      this.send(...out);
    } while (left > 0);
    if (end) {
      s.localEnded = true;
      this.maybeClose(s);
    }
    if (wait) await this.writer.drained();
  }

  /** Wakes senders waiting for a window (or for a stream or the connection to fail). */
  protected wakeSenders(): void {
    for (const w of this.#sendWaiters.splice(0)) w();
  }

  /** Forgets the stream once both ends are done. */
  protected maybeClose(s: S): void {
    if (s.localEnded && s.remoteEnded) this.forget(s);
  }

  /** The peer ended its side of a stream. */
  protected remoteEnd(s: S): void {
    if (s.remoteEnded) return;
    s.remoteEnded = true;
    s.notify();
    this.maybeClose(s);
  }

  #sink(): FrameSink {
    return {
      dataStart: (sid, length) => {
        this.connRecvWindow -= length;
        if (this.connRecvWindow < 0) {
          protocolError("DATA beyond the connection window", ErrorCode.FLOW_CONTROL_ERROR);
        }
        const s = this.dataFor(sid, length);
        if (s) {
          s.recvWindow -= length;
          if (s.recvWindow < 0) {
            protocolError(`DATA beyond the window of stream ${sid}`, ErrorCode.FLOW_CONTROL_ERROR);
          }
        }
        this.#dataStream = s;
        // Bytes no stream takes (one reset or forgotten) still took connection window.
        if (!s) this.credit(length);
      },
      data: (_sid, bytes) => {
        const s = this.#dataStream;
        if (!s) return;
        s.pieces.push(bytes);
        s.queued += bytes.length;
        s.notify();
      },
      dataEnd: (sid, flags, padding) => {
        const s = this.#dataStream;
        this.#dataStream = null;
        if (s && padding > 0) {
          s.unacked += padding;
          this.credit(padding);
        }
        if (flags & Flag.END_STREAM) {
          const t = this.streams.get(sid);
          if (t) this.remoteEnd(t);
        }
      },
      headers: (sid, flags, block) => this.headerBlock(sid, flags, block),
      frame: (type, flags, sid, payload) => this.#frame(type, flags, sid, payload),
    };
  }

  #frame(type: number, flags: number, sid: number, payload: Uint8Array): void {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    const size = (n: number, what: string) => {
      if (payload.length !== n) {
        protocolError(`${what} of the wrong size`, ErrorCode.FRAME_SIZE_ERROR);
      }
    };
    switch (type) {
      case FrameType.SETTINGS: {
        if (sid !== 0) protocolError("SETTINGS on a stream");
        if (flags & Flag.ACK) return;
        if (payload.length % 6 !== 0) {
          protocolError("SETTINGS of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        let maxStreams: number | undefined;
        for (let i = 0; i < payload.length; i += 6) {
          const id = view.getUint16(i);
          const value = view.getUint32(i + 2);
          if (id === Setting.INITIAL_WINDOW_SIZE) {
            if (value > MAX_WINDOW) protocolError("window too large", ErrorCode.FLOW_CONTROL_ERROR);
            const delta = value - this.peerInitialWindow;
            this.peerInitialWindow = value;
            for (const s of this.streams.values()) s.sendWindow += delta;
          } else if (id === Setting.MAX_FRAME_SIZE) {
            if (value < 16384 || value > (1 << 24) - 1) protocolError("bad MAX_FRAME_SIZE");
            this.peerMaxFrame = value;
          } else if (id === Setting.MAX_CONCURRENT_STREAMS) {
            maxStreams = value;
          } else if (id === Setting.ENABLE_PUSH && value > 1) {
            protocolError("bad ENABLE_PUSH");
          }
        }
        this.sendControl(settingsFrame([], true));
        this.wakeSenders();
        this.settingsApplied(maxStreams);
        return;
      }
      case FrameType.PING: {
        size(8, "PING");
        if (sid !== 0) protocolError("PING on a stream");
        if (flags & Flag.ACK) this.pingAnswered();
        else this.sendControl(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      }
      case FrameType.WINDOW_UPDATE: {
        size(4, "WINDOW_UPDATE");
        const inc = view.getUint32(0) & MAX_WINDOW;
        if (sid === 0) {
          if (inc === 0) protocolError("WINDOW_UPDATE of 0");
          this.connSendWindow += inc;
          if (this.connSendWindow > MAX_WINDOW) {
            protocolError("connection window over 2^31-1", ErrorCode.FLOW_CONTROL_ERROR);
          }
        } else {
          const s = this.streams.get(sid);
          if (s) {
            s.sendWindow += inc;
            if (s.sendWindow > MAX_WINDOW) this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
          }
        }
        this.wakeSenders();
        return;
      }
      case FrameType.PUSH_PROMISE:
        // Our clients turn push off, and clients never push.
        protocolError("PUSH_PROMISE, though push is off");
        break;
      default:
        this.otherFrame(type, flags, sid, payload);
    }
  }
}
