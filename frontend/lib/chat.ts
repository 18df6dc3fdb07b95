/**
 * The chat session of one browser tab: one Socket.IO connection for the whole session, the
 * channel it is in, each channel's timeline, presence, typing, the rate-limit block and the
 * outbox. React reads it through `subscribe`/`getSnapshot` (useSyncExternalStore); every
 * change replaces the snapshot, so renders see consistent state.
 *
 * The socket and the REST client are injected, so the protocol flows (re-join and sync after a
 * reconnect, gap repair, idempotent retries) can be exercised against a fake server in tests.
 */
import { api as defaultApi, ApiError, fieldSentence } from "./api";
import { reconnectDelay } from "./backoff";
import { blockEnd } from "./countdown";
import {
  contiguousSeq,
  hasOlderAfterPage,
  highestSeq,
  mergeMessages,
  newOutgoing,
  revealsGap,
  sendOutcome,
  setStatus,
  settleOutgoing,
  type Outgoing,
} from "./timeline";
import { TYPING_EXPIRY_MS, TYPING_IDLE_MS, TypingThrottle } from "./typing";
import type {
  Ack,
  Channel,
  ChannelPresenceEvent,
  Message,
  OnlineUser,
  RateLimitedEvent,
  User,
  UserStatusEvent,
  UserTypingEvent,
} from "./types";

export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "offline";

export interface ChannelState {
  /** Stored messages, sorted and unique by seq. */
  messages: Message[];
  /** This tab's messages not yet stored. */
  outgoing: Outgoing[];
  /** The newest page has been loaded (live messages are merged before that too). */
  loaded: boolean;
  hasOlder: boolean;
  loadingOlder: boolean;
  error: string | null;
}

export interface Typist {
  userId: string;
  username: string;
  expires: number;
}

export interface ChatState {
  status: ConnectionStatus;
  channels: Channel[];
  /** The channel the socket is in (null until the first join answers). */
  current: string | null;
  /** A channel being joined. */
  joining: string | null;
  byChannel: Record<string, ChannelState>;
  online: OnlineUser[];
  onlineCount: number | null;
  typing: Typist[];
  /** When the rate-limit block ends (local ms), or null. */
  blockedUntil: number | null;
  /** When this tab learnt of the block (local ms): a clock for the countdown is never older. */
  blockedAt: number | null;
  passwordPrompt: { channel: string; error: string | null } | null;
  notice: { id: number; text: string } | null;
  signedOut: boolean;
}

/** The part of a socket.io-client `Socket` this module uses. */
export interface SocketLike {
  readonly connected: boolean;
  readonly active: boolean;
  connect(): unknown;
  disconnect(): unknown;
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event?: string): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  timeout(ms: number): { emit(event: string, ...args: unknown[]): unknown };
  io: { on(event: string, listener: (...args: never[]) => void): unknown; off(event?: string): unknown };
}

export type Api = typeof defaultApi;

export interface ChatOptions {
  socket: SocketLike;
  api?: Api;
  /** The channel to open first (defaults to `general`). */
  initialChannel?: string;
  /** Called when the open channel changes (to keep it in the address bar). */
  onChannelChange?: (name: string) => void;
  uuid?: () => string;
}

export const PAGE_SIZE = 50;
const SYNC_PAGE = 200;
const ACK_TIMEOUT_MS = 10_000;
/** A channel returned to after a while is synced up to this many pages, else reloaded. */
const SWITCH_SYNC_PAGES = 5;
/** Consecutive failed reconnection attempts before the status reads "offline". */
const OFFLINE_AFTER_ATTEMPTS = 3;
const CHANNEL_POLL_MS = 20_000;

const emptyChannel = (): ChannelState => ({
  messages: [],
  outgoing: [],
  loaded: false,
  hasOlder: false,
  loadingOlder: false,
  error: null,
});

export class ChatClient {
  private state: ChatState;
  private readonly listeners = new Set<() => void>();
  private readonly socket: SocketLike;
  private readonly api: Api;
  private readonly user: User;
  private readonly uuid: () => string;
  private readonly onChannelChange?: (name: string) => void;
  private readonly initialChannel: string;

  /** Acks still awaited; settled as unanswered when the connection drops. */
  private readonly inflight = new Set<(value: undefined) => void>();
  private joinSeq = 0;
  /** The channel the server has confirmed this socket is in since the last connect. */
  private joined: string | null = null;
  private hadConnection = false;
  private pumping = false;
  private readonly syncing = new Set<string>();
  private readonly syncAgain = new Set<string>();
  private readonly typingThrottle = new TypingThrottle();
  private typingChannel: string | null = null;
  private timers = new Map<string, ReturnType<typeof setTimeout>>();
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private channelPoll: ReturnType<typeof setInterval> | null = null;
  private manualAttempts = 0;
  private noticeId = 0;
  /** Between `start` and `stop`; a stopped client can be started again (React StrictMode). */
  private stopped = true;

  constructor(user: User, options: ChatOptions) {
    this.user = user;
    this.socket = options.socket;
    this.api = options.api ?? defaultApi;
    this.uuid = options.uuid ?? (() => crypto.randomUUID());
    this.onChannelChange = options.onChannelChange;
    this.initialChannel = options.initialChannel || "general";
    this.state = {
      status: "connecting",
      channels: [],
      current: null,
      joining: null,
      byChannel: {},
      online: [],
      onlineCount: null,
      typing: [],
      blockedUntil: null,
      blockedAt: null,
      passwordPrompt: null,
      notice: null,
      signedOut: false,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Store interface

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ChatState => this.state;

  private set(patch: Partial<ChatState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }

  private updateChannel(name: string, fn: (c: ChannelState) => ChannelState): void {
    const prev = this.state.byChannel[name] ?? emptyChannel();
    const next = fn(prev);
    if (next === prev && this.state.byChannel[name]) return;
    this.set({ byChannel: { ...this.state.byChannel, [name]: next } });
  }

  private channel(name: string): ChannelState {
    return this.state.byChannel[name] ?? emptyChannel();
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const s = this.socket;
    s.on("connect", this.onConnect);
    s.on("disconnect", this.onDisconnect as never);
    s.on("connect_error", this.onConnectError as never);
    s.on("message.new", this.onMessage as never);
    s.on("user.status", this.onUserStatus as never);
    s.on("user.typing", this.onUserTyping as never);
    s.on("channel.presence", this.onChannelPresence as never);
    s.on("rate_limited", this.onRateLimited as never);
    s.io.on("reconnect_attempt", this.onReconnectAttempt as never);
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.onBrowserOnline);
      window.addEventListener("offline", this.onBrowserOffline);
    }
    void this.refreshChannels();
    // Channels made by others have no event: look again now and then.
    this.channelPoll = setInterval(() => void this.refreshChannels(), CHANNEL_POLL_MS);
    if (s.connected) this.onConnect();
    else s.connect();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopTyping();
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.channelPoll) clearInterval(this.channelPoll);
    this.channelPoll = null;
    for (const settle of [...this.inflight]) settle(undefined);
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.onBrowserOnline);
      window.removeEventListener("offline", this.onBrowserOffline);
    }
    this.socket.off();
    this.socket.io.off("reconnect_attempt");
    this.socket.disconnect();
    this.joined = null;
    this.hadConnection = false;
  }

  private later(key: string, ms: number, fn: () => void): void {
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

  private cancel(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  private notify(text: string): void {
    const id = ++this.noticeId;
    this.set({ notice: { id, text } });
    this.later("notice", 6000, () => {
      if (this.state.notice?.id === id) this.set({ notice: null });
    });
  }

  dismissNotice(): void {
    this.set({ notice: null });
  }

  /** A request answered 401: the session is over (expired, or logged out in another tab). */
  private handleApiError(e: unknown): string {
    if (e instanceof ApiError && e.status === 401) {
      this.set({ signedOut: true });
    }
    return e instanceof Error ? e.message : "Something went wrong.";
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  private onConnect = (): void => {
    this.manualAttempts = 0;
    this.cancel("reconnect");
    const reconnected = this.hadConnection;
    this.hadConnection = true;
    this.joined = null;
    this.set({ status: "connected" });
    // The server put the socket in the default channel; go (back) to the open one. On a
    // reconnect the join is followed by a sync of what was missed.
    const target = this.state.current ?? this.state.joining ?? this.initialChannel;
    void this.join(target, undefined, reconnected ? "reconnect" : "first");
  };

  private onDisconnect = (reason: string): void => {
    this.joined = null;
    for (const settle of [...this.inflight]) settle(undefined);
    this.set({ typing: [], status: this.browserOffline() ? "offline" : "reconnecting" });
    this.typingThrottle.stop();
    // socket.io-client does not come back by itself when the server closed the connection
    // (a restarting instance does that); come back with the same jittered backoff.
    if (reason === "io server disconnect") this.scheduleManualReconnect();
  };

  private onConnectError = (err: Error): void => {
    // A refused handshake may mean the session ended (logged out elsewhere, expired).
    if (err.message === "unauthorized") this.api.me().catch((e) => this.handleApiError(e));
    // Refused by the server rather than a network failure: socket.io-client will not retry.
    if (!this.socket.active) this.scheduleManualReconnect();
    if (this.state.status === "connecting" || this.state.status === "connected") {
      this.set({ status: "reconnecting" });
    }
  };

  private onReconnectAttempt = (attempt: number): void => {
    this.set({
      status: this.browserOffline() || attempt > OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting",
    });
  };

  private scheduleManualReconnect(): void {
    const attempt = this.manualAttempts++;
    if (attempt > OFFLINE_AFTER_ATTEMPTS) this.set({ status: "offline" });
    this.later("reconnect", reconnectDelay(attempt), () => {
      if (!this.socket.connected) this.socket.connect();
    });
  }

  private onBrowserOnline = (): void => {
    if (!this.socket.connected) {
      this.set({ status: "reconnecting" });
      if (!this.socket.active) this.socket.connect();
    }
  };

  private onBrowserOffline = (): void => {
    if (!this.socket.connected) this.set({ status: "offline" });
  };

  private browserOffline(): boolean {
    return typeof navigator !== "undefined" && navigator.onLine === false;
  }

  /** Reconnect now instead of waiting for the next attempt. */
  reconnectNow(): void {
    if (this.socket.connected) return;
    this.set({ status: "reconnecting" });
    this.socket.connect();
  }

  private emitAck<T>(event: string, payload: unknown): Promise<Ack<T> | undefined> {
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

  // -------------------------------------------------------------------------------------------
  // Channels

  async refreshChannels(): Promise<void> {
    try {
      const channels = await this.api.channels();
      this.set({ channels });
    } catch (e) {
      this.handleApiError(e);
    }
  }

  /** Opens a channel (a private one may ask for its password). */
  selectChannel(name: string): void {
    if (name === this.state.current && this.joined === name) return;
    void this.join(name, undefined, "switch");
  }

  submitPassword(channel: string, password: string): void {
    void this.join(channel, password, "switch");
  }

  cancelPassword(): void {
    this.set({ passwordPrompt: null });
    // Nothing open yet (the address named a private channel): open the default one.
    if (this.state.current === null) void this.join("general", undefined, "first");
  }

  private async join(
    name: string,
    password: string | undefined,
    why: "first" | "switch" | "reconnect",
  ): Promise<void> {
    const seq = ++this.joinSeq;
    if (why === "switch" && this.state.current && this.state.current !== name) this.stopTyping();
    this.set({ joining: name });
    const ack = await this.emitAck<{ channel: Channel; online: number }>(
      "channel.join",
      password === undefined ? { channel: name } : { channel: name, password },
    );
    if (seq !== this.joinSeq || this.stopped) return;
    if (!ack) {
      this.set({ joining: null });
      // Unanswered because the connection dropped: the next connect joins again.
      if (this.socket.connected) this.notify(`Could not open #${name}. Try again.`);
      return;
    }
    if (!ack.ok) {
      this.set({ joining: null });
      const code = ack.error.code;
      if (code === "forbidden") {
        this.set({
          passwordPrompt: {
            channel: name,
            error: password === undefined ? null : "Wrong password. Try again.",
          },
        });
      } else if (code === "not_found" || code === "invalid_payload") {
        this.notify(`#${name} does not exist.`);
        void this.refreshChannels();
      } else {
        this.notify(ack.error.message || `Could not open #${name}.`);
      }
      // Nothing open yet (the first channel failed): fall back to the default one.
      if (this.state.current === null && name !== "general" && code !== "forbidden") {
        void this.join("general", undefined, "first");
      }
      return;
    }

    const previous = this.state.current;
    this.joined = name;
    const switched = previous !== name;
    this.set({
      current: name,
      joining: null,
      passwordPrompt: null,
      onlineCount: ack.online,
      typing: switched ? [] : this.state.typing,
      online: switched ? [] : this.state.online,
    });
    if (switched) this.onChannelChange?.(name);
    if (!this.state.channels.some((c) => c.name === name)) void this.refreshChannels();
    void this.fetchOnline(name);

    const held = this.channel(name);
    if (!held.loaded) {
      await this.loadLatest(name);
    } else {
      const complete = await this.sync(name, why === "reconnect" ? 50 : SWITCH_SYNC_PAGES);
      if (!complete && this.socket.connected) {
        // Away too long to catch up page by page: start again from the newest page.
        this.updateChannel(name, (c) => ({ ...c, messages: [], loaded: false, hasOlder: false }));
        await this.loadLatest(name);
      }
    }
    void this.pump();
  }

  async createChannel(
    name: string,
    description: string,
    password: string,
  ): Promise<{ ok: true } | { ok: false; fieldErrors: Record<string, string>; message: string }> {
    try {
      const channel = await this.api.createChannel(name, description, password);
      await this.refreshChannels();
      void this.join(channel.name, undefined, "switch");
      return { ok: true };
    } catch (e) {
      const message = this.handleApiError(e);
      const labels: Record<string, string> = { name: "Name", description: "Description", password: "Password" };
      const fieldErrors: Record<string, string> = {};
      if (e instanceof ApiError) {
        for (const [field, text] of Object.entries(e.fieldErrors)) fieldErrors[field] = fieldSentence(labels[field] ?? field, text);
      }
      if (e instanceof ApiError) {
        if (e.code === "conflict") fieldErrors.name ??= "A channel with this name already exists.";
        else if (e.code === "too_long") fieldErrors.description ??= message;
        else if (e.code === "invalid_payload" && Object.keys(fieldErrors).length === 0)
          fieldErrors.name = "Use 1 to 64 lowercase letters, digits, - or _.";
      }
      return { ok: false, fieldErrors, message };
    }
  }

  // -------------------------------------------------------------------------------------------
  // History and sync

  private async loadLatest(name: string): Promise<void> {
    this.updateChannel(name, (c) => ({ ...c, error: null }));
    try {
      const page = await this.api.history(name, { limit: PAGE_SIZE });
      this.updateChannel(name, (c) => {
        const messages = mergeMessages(c.messages, page);
        return {
          ...c,
          messages,
          outgoing: settleOutgoing(c.outgoing, messages, this.user.id),
          loaded: true,
          hasOlder: hasOlderAfterPage(page, PAGE_SIZE),
          error: null,
        };
      });
      const c = this.channel(name);
      // Live messages that arrived during the load may sit above a hole.
      if (contiguousSeq(c.messages) < highestSeq(c.messages)) void this.sync(name, 50);
    } catch (e) {
      const message = this.handleApiError(e);
      this.updateChannel(name, (c) => ({ ...c, error: message }));
    }
  }

  /** Loads the page just older than the oldest message held. */
  async loadOlder(): Promise<void> {
    const name = this.state.current;
    if (!name) return;
    const c = this.channel(name);
    if (!c.loaded || !c.hasOlder || c.loadingOlder || c.messages.length === 0) return;
    const before = c.messages[0]!.seq;
    this.updateChannel(name, (x) => ({ ...x, loadingOlder: true }));
    try {
      const page = await this.api.history(name, { before, limit: PAGE_SIZE });
      this.updateChannel(name, (x) => ({
        ...x,
        messages: mergeMessages(x.messages, page),
        hasOlder: hasOlderAfterPage(page, PAGE_SIZE),
        loadingOlder: false,
      }));
    } catch (e) {
      this.handleApiError(e);
      this.updateChannel(name, (x) => ({ ...x, loadingOlder: false }));
      this.notify("Could not load older messages.");
    }
  }

  retryLoad(): void {
    const name = this.state.current;
    if (name) void this.loadLatest(name);
  }

  /**
   * Fetches what was missed with `messages.sync`, from the end of the unbroken run of held
   * messages, page by page while `has_more`. Returns false when it stopped at `maxPages`
   * with more to come. One sync per channel at a time; a request during one runs again after.
   */
  private async sync(name: string, maxPages: number): Promise<boolean> {
    if (this.syncing.has(name)) {
      this.syncAgain.add(name);
      return true;
    }
    this.syncing.add(name);
    let complete = true;
    try {
      do {
        this.syncAgain.delete(name);
        let after = contiguousSeq(this.channel(name).messages);
        complete = false;
        for (let page = 0; page < maxPages; page++) {
          const ack = await this.emitAck<{ messages: Message[]; has_more: boolean }>(
            "messages.sync",
            { channel: name, after_seq: after, limit: SYNC_PAGE },
          );
          if (!ack || !ack.ok) {
            complete = true; // nothing more to learn now; the next connect syncs again
            break;
          }
          this.absorb(name, ack.messages);
          const last = ack.messages[ack.messages.length - 1];
          if (!ack.has_more || !last) {
            complete = true;
            break;
          }
          after = last.seq;
        }
      } while (this.syncAgain.has(name) && !this.stopped);
    } finally {
      this.syncing.delete(name);
    }
    return complete;
  }

  /** Merges stored messages into a channel and settles the outgoing ones they confirm. */
  private absorb(name: string, messages: Message[]): void {
    if (messages.length === 0) return;
    this.updateChannel(name, (c) => {
      const merged = mergeMessages(c.messages, messages);
      return { ...c, messages: merged, outgoing: settleOutgoing(c.outgoing, messages, this.user.id) };
    });
  }

  private onMessage = (message: Message): void => {
    if (!message || typeof message.seq !== "number" || typeof message.channel !== "string") return;
    const name = message.channel;
    const before = this.channel(name);
    const gap = before.loaded && revealsGap(before.messages, message);
    this.absorb(name, [message]);
    // Someone whose message just arrived has stopped typing it.
    if (name === this.state.current && this.state.typing.some((t) => t.userId === message.sender_id)) {
      this.set({ typing: this.state.typing.filter((t) => t.userId !== message.sender_id) });
    }
    if (gap) void this.sync(name, 50);
  };

  // -------------------------------------------------------------------------------------------
  // Sending

  /** Queues a message for the open channel; it shows at once as pending. */
  send(text: string): void {
    const channel = this.state.current;
    const trimmed = text.trim();
    if (!channel || !trimmed) return;
    this.stopTyping();
    const o = newOutgoing(channel, trimmed, this.uuid(), new Date(), false);
    this.updateChannel(channel, (c) => ({ ...c, outgoing: [...c.outgoing, o] }));
    void this.pump();
  }

  /** Sends a failed message again, with the same client_message_id. */
  retry(clientMessageId: string): void {
    const channel = this.state.current;
    if (!channel) return;
    this.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, clientMessageId, "queued") }));
    void this.pump();
  }

  /** Gives up on a failed message. */
  discard(clientMessageId: string): void {
    const channel = this.state.current;
    if (!channel) return;
    this.updateChannel(channel, (c) => ({
      ...c,
      outgoing: c.outgoing.filter((o) => o.client_message_id !== clientMessageId),
    }));
  }

  private canSend(channel: string): boolean {
    return (
      this.socket.connected &&
      this.joined === channel &&
      this.state.current === channel &&
      !(this.state.blockedUntil && this.state.blockedUntil > Date.now())
    );
  }

  /** Sends the open channel's queued messages one at a time, in the order they were written. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const channel = this.state.current;
        if (!channel || !this.canSend(channel)) return;
        const next = this.channel(channel).outgoing.find((o) => o.status === "queued");
        if (!next) return;
        await this.sendOne(channel, next);
      }
    } finally {
      this.pumping = false;
    }
  }

  private async sendOne(channel: string, o: Outgoing): Promise<void> {
    const id = o.client_message_id;
    this.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "sending") }));
    const ack = await this.emitAck<{ message: Message; duplicate: boolean }>("message.send", {
      text: o.text,
      channel,
      client_message_id: id,
    });
    const outcome = sendOutcome(ack, this.socket.connected);
    switch (outcome.kind) {
      case "confirmed":
        this.absorb(channel, [outcome.message]);
        // A stored message always settles its outgoing copy, whoever sent it back.
        this.updateChannel(channel, (c) => ({
          ...c,
          outgoing: c.outgoing.filter((x) => x.client_message_id !== id),
        }));
        break;
      case "rate_limited":
        this.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "queued") }));
        this.block({ retry_after_ms: outcome.retryAfterMs });
        break;
      case "requeue":
        this.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "queued") }));
        break;
      case "failed":
        this.updateChannel(channel, (c) => ({
          ...c,
          outgoing: setStatus(c.outgoing, id, "failed", outcome.error),
        }));
        break;
    }
  }

  private onRateLimited = (notice: RateLimitedEvent): void => {
    this.block(notice ?? {});
  };

  private block(notice: { retry_after_ms?: number; until?: string }): void {
    const receivedAt = Date.now();
    // A refusal always waits a little, so a block that is just ending cannot spin the outbox.
    const until = Math.max(blockEnd(notice, receivedAt), receivedAt + 500);
    this.set({
      blockedUntil: Math.max(until, this.state.blockedUntil ?? 0),
      // The countdown's clock is never older than the latest notice, so it never shows more
      // than the server said.
      blockedAt: receivedAt,
    });
    this.later("unblock", Math.max(0, (this.state.blockedUntil ?? until) - receivedAt) + 50, () => {
      this.set({ blockedUntil: null, blockedAt: null });
      void this.pump();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Presence and typing

  private async fetchOnline(name: string): Promise<void> {
    try {
      const users = await this.api.online(name);
      if (this.state.current !== name) return;
      // The list is capped at 1000; the count from `channel.presence` is exact beyond that.
      this.set({ online: sortUsers(users), ...(users.length < 1000 ? { onlineCount: users.length } : {}) });
    } catch (e) {
      this.handleApiError(e);
    }
  }

  private onUserStatus = (e: UserStatusEvent): void => {
    if (!e || typeof e.userId !== "string") return;
    // `user.status` reaches the channels the user is in, so it moves this channel's count at
    // once; the coalesced `channel.presence` confirms it within a second or two.
    const listed = this.state.online.some((u) => u.userId === e.userId);
    const others = this.state.online.filter((u) => u.userId !== e.userId);
    const count = this.state.onlineCount;
    if (e.status === "online") {
      this.set({
        online: sortUsers([...others, { userId: e.userId, username: e.username }]),
        onlineCount: !listed && count !== null ? count + 1 : count,
      });
    } else {
      this.set({
        online: others,
        onlineCount: listed && count !== null ? Math.max(0, count - 1) : count,
        typing: this.state.typing.filter((t) => t.userId !== e.userId),
      });
    }
  };

  private onChannelPresence = (e: ChannelPresenceEvent): void => {
    if (!e || e.channel !== this.state.current) return;
    this.set({ onlineCount: e.online });
    const name = e.channel;
    this.later("online", 300, () => void this.fetchOnline(name));
  };

  private onUserTyping = (e: UserTypingEvent): void => {
    if (!e || e.channel !== this.state.current || e.userId === this.user.id) return;
    const rest = this.state.typing.filter((t) => t.userId !== e.userId);
    if (e.isTyping) {
      this.set({
        typing: [...rest, { userId: e.userId, username: e.username, expires: Date.now() + TYPING_EXPIRY_MS }],
      });
      this.ensureSweep();
    } else if (rest.length !== this.state.typing.length) {
      this.set({ typing: rest });
    }
  };

  private ensureSweep(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      const alive = this.state.typing.filter((t) => t.expires > now);
      if (alive.length !== this.state.typing.length) this.set({ typing: alive });
      if (alive.length === 0 && this.sweepTimer) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = null;
      }
    }, 1000);
  }

  /** The composer changed: tell the channel this user is typing (throttled). */
  typing(hasText: boolean): void {
    const channel = this.state.current;
    if (!channel || !this.socket.connected || this.joined !== channel) return;
    if (!hasText) {
      this.stopTyping();
      return;
    }
    if (this.typingThrottle.input(Date.now())) {
      this.typingChannel = channel;
      this.socket.emit("user.typing", { channel, isTyping: true }, () => {});
    }
    this.later("typing-idle", TYPING_IDLE_MS, () => this.stopTyping());
  }

  private stopTyping(): void {
    this.cancel("typing-idle");
    const channel = this.typingChannel;
    if (this.typingThrottle.stop() && channel && this.socket.connected) {
      this.socket.emit("user.typing", { channel, isTyping: false }, () => {});
    }
    this.typingChannel = null;
  }
}

function sortUsers(users: OnlineUser[]): OnlineUser[] {
  const seen = new Set<string>();
  return users
    .filter((u) => (seen.has(u.userId) ? false : (seen.add(u.userId), true)))
    .sort((a, b) => a.username.localeCompare(b.username));
}
