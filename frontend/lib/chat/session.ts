/**
 * What every part of one tab's chat session shares: the store, the injected socket and REST
 * client, the signed-in user, acks still awaited, and timers that die with the session. Each
 * part is handed this, so what they all touch has one owner below them.
 *
 * The socket and the REST client are injected, so the protocol flows (re-join and sync after a
 * reconnect, gap repair, idempotent retries) can be exercised against a fake server in tests.
 */
import { api as defaultApi, ApiError } from "../api";
import type { Ack, User } from "../types";
import { ChatStore } from "./store";

/** The part of a socket.io-client `Socket` the session uses. */
export interface SocketLike {
  readonly connected: boolean;
  readonly active: boolean;
  /** The last connect recovered the session (Socket.IO connection state recovery). */
  readonly recovered?: boolean;
  connect(): unknown;
  disconnect(): unknown;
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event?: string): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  timeout(ms: number): { emit(event: string, ...args: unknown[]): unknown };
  io: { on(event: string, listener: (...args: never[]) => void): unknown; off(event?: string): unknown };
}

export type Api = typeof defaultApi;

/**
 * How long an ack is awaited: longer than the server holds a send over the rate limit
 * (`RATE_LIMIT_HOLD_SECS`, 10 s by default) before it handles it.
 */
const ACK_TIMEOUT_MS = 20_000;
const NOTICE_MS = 6000;

export class Session {
  readonly store = new ChatStore();
  readonly user: User;
  readonly socket: SocketLike;
  readonly api: Api;
  /** Between `start` and `stop`; a stopped session can be started again (React StrictMode). */
  stopped = true;
  /** The channel the server has confirmed this socket is in since the last connect. */
  joined: string | null = null;

  /** Acks still awaited; settled as unanswered when the connection drops. */
  private readonly inflight = new Set<(value: undefined) => void>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private noticeId = 0;

  constructor(user: User, socket: SocketLike, api: Api) {
    this.user = user;
    this.socket = socket;
    this.api = api;
  }

  /** Runs `fn` after `ms`, replacing any timer under the same key; never after `stop`. */
  later(key: string, ms: number, fn: () => void): void {
    const old = this.timers.get(key);
    if (old) clearTimeout(old);
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        if (!this.stopped) fn();
      }, ms),
    );
  }

  cancel(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  cancelAll(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /**
   * Emits with an ack; resolves undefined when not connected, on timeout, or when the
   * connection drops first, so callers never wait on an answer that cannot come.
   */
  emitAck<T>(event: string, payload: unknown): Promise<Ack<T> | undefined> {
    return new Promise((resolve) => {
      if (!this.socket.connected) {
        resolve(undefined);
        return;
      }
      let done = false;
      const settle = (value: Ack<T> | undefined) => {
        if (done) return;
        done = true;
        this.inflight.delete(settle as (v: undefined) => void);
        resolve(value);
      };
      this.inflight.add(settle as (v: undefined) => void);
      this.socket
        .timeout(ACK_TIMEOUT_MS)
        .emit(event, payload, (err: Error | null, ack: Ack<T>) => settle(err ? undefined : ack));
    });
  }

  /** The connection is gone: every awaited ack is settled as unanswered. */
  abandonAcks(): void {
    for (const settle of [...this.inflight]) settle(undefined);
  }

  notify(text: string): void {
    const id = ++this.noticeId;
    this.store.set({ notice: { id, text } });
    this.later("notice", NOTICE_MS, () => {
      if (this.store.state.notice?.id === id) this.store.set({ notice: null });
    });
  }

  dismissNotice(): void {
    this.store.set({ notice: null });
  }

  /** A request answered 401: the session is over (expired, or logged out in another tab). */
  handleApiError(e: unknown): string {
    if (e instanceof ApiError && e.status === 401) {
      this.store.set({ signedOut: true });
    }
    return e instanceof Error ? e.message : "Something went wrong.";
  }
}
