/**
 * The life of the one Socket.IO connection a tab keeps for its whole session: wiring the
 * server's events to the parts that handle them, the status the UI shows, coming back after
 * a drop (including the cases socket.io-client does not retry by itself), and re-joining the
 * open channel on every connect.
 */
import { reconnectDelay } from "../backoff";
import { readChange } from "../changes";
import type { InstanceDraining } from "../generated/InstanceDraining";
import type { Actions } from "./actions";
import type { Channels } from "./channels";
import type { Outbox } from "./outbox";
import type { Presence } from "./presence";
import type { Reading } from "./reading";
import type { Session } from "./session";
import type { Sync } from "./sync";
import type { TypingIndicators } from "./typing";

/** Consecutive failed reconnection attempts before the status reads "offline". */
const OFFLINE_AFTER_ATTEMPTS = 3;
const CHANNEL_POLL_MS = 20_000;
/**
 * How long "moving you to another server" may show without the connection coming back; after
 * that the usual reconnecting (or offline) state says what is going on.
 */
export const MOVING_MS = 15_000;

export interface ConnectionParts {
  channels: Channels;
  sync: Sync;
  outbox: Outbox;
  presence: Presence;
  typing: TypingIndicators;
  reading: Reading;
  actions: Actions;
  /** The channel to open first. */
  initialChannel: string;
}

export class Connection {
  private readonly session: Session;
  private readonly parts: ConnectionParts;
  private hadConnection = false;
  private manualAttempts = 0;
  private channelPoll: ReturnType<typeof setInterval> | null = null;
  /** The server closed the connection itself (a ban, a removed account, a logout elsewhere). */
  private closedByServer = false;
  /** The channel the socket was in when its connection dropped. */
  private lastJoined: string | null = null;

  constructor(session: Session, parts: ConnectionParts) {
    this.session = session;
    this.parts = parts;
  }

  start(): void {
    const { session } = this;
    if (!session.stopped) return;
    session.stopped = false;
    const { sync, outbox, presence, typing, reading } = this.parts;
    const s = session.socket;
    s.on("connect", this.onConnect);
    s.on("disconnect", this.onDisconnect as never);
    s.on("connect_error", this.onConnectError as never);
    s.on("message.new", sync.onMessage as never);
    s.on("user.status", presence.onUserStatus as never);
    s.on("user.typing", typing.onUserTyping as never);
    s.on("channel.presence", presence.onChannelPresence as never);
    s.on("rate_limited", outbox.onRateLimited as never);
    s.on("message.updated", ((e: unknown) => sync.onChange(readChange("updated", e))) as never);
    s.on("message.deleted", ((e: unknown) => sync.onChange(readChange("deleted", e))) as never);
    s.on("message.reactions", ((e: unknown) => sync.onChange(readChange("reactions", e))) as never);
    s.on("mention", reading.onMention as never);
    s.on("channel.read", reading.onChannelRead as never);
    s.on("channel.removed", reading.onChannelRemoved as never);
    s.on("channel.created", reading.onChannelCreated as never);
    s.on("instance.draining", this.onDraining as never);
    s.io.on("reconnect_attempt", this.onReconnectAttempt as never);
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.onBrowserOnline);
      window.addEventListener("offline", this.onBrowserOffline);
    }
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", this.onVisibility);
    void reading.refreshAll();
    // Messages in channels this socket is not in have no event: look again now and then (the
    // lists carry the unread counts; channels made by others come as `channel.created`).
    this.channelPoll = setInterval(() => void reading.refreshAll(), CHANNEL_POLL_MS);
    if (s.connected) this.onConnect();
    else s.connect();
  }

  stop(): void {
    const { session } = this;
    if (session.stopped) return;
    this.parts.typing.stop();
    session.stopped = true;
    session.cancelAll();
    this.parts.typing.clearSweep();
    if (this.channelPoll) clearInterval(this.channelPoll);
    this.channelPoll = null;
    session.abandonAcks();
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.onBrowserOnline);
      window.removeEventListener("offline", this.onBrowserOffline);
    }
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.onVisibility);
    session.socket.off();
    session.socket.io.off("reconnect_attempt");
    session.socket.disconnect();
    session.joined = null;
    this.hadConnection = false;
  }

  /** Reconnect now instead of waiting for the next attempt. */
  reconnectNow(): void {
    const { socket, store } = this.session;
    if (socket.connected) return;
    store.set({ status: "reconnecting" });
    socket.connect();
  }

  private onConnect = (): void => {
    const { session } = this;
    const { store } = session;
    this.manualAttempts = 0;
    session.cancel("reconnect");
    const reconnected = this.hadConnection;
    this.hadConnection = true;
    this.closedByServer = false;
    session.joined = null;
    session.cancel("moving");
    store.set({ status: "connected", moving: false });
    void this.parts.actions.probeAdmin();
    const target = store.state.current ?? store.state.joining ?? this.parts.initialChannel;
    // The server recovered the session (connection state recovery): the socket is back in the
    // channel it was in, and the server replays what it missed, in order.
    if (reconnected && session.socket.recovered === true && this.lastJoined === target) {
      session.joined = target;
      this.parts.channels.recovered(target);
      return;
    }
    // Otherwise the server put the socket in the default channel; go (back) to the open one. On
    // a reconnect the join is followed by a sync of what was missed.
    void this.parts.channels.join(target, undefined, reconnected ? "reconnect" : "first");
  };

  /**
   * The socket's instance is being drained: the server closes this connection in a moment and
   * socket.io-client reconnects (to another instance, the session recovered). Until then the
   * page says so calmly instead of reporting a lost connection.
   */
  private onDraining = (event: unknown): void => {
    const { session } = this;
    if (event && typeof event === "object" && (event as Partial<InstanceDraining>).reconnect === false) return;
    session.store.set({ moving: true });
    session.later("moving", MOVING_MS, () => session.store.set({ moving: false }));
  };

  private onDisconnect = (reason: string): void => {
    const { session } = this;
    this.lastJoined = session.joined;
    session.joined = null;
    session.abandonAcks();
    session.store.set({ typing: [], status: this.browserOffline() ? "offline" : "reconnecting" });
    this.parts.typing.connectionLost();
    // socket.io-client does not come back by itself when the server closed the connection
    // (a restarting instance does that); come back with the same jittered backoff.
    if (reason === "io server disconnect") {
      this.closedByServer = true;
      this.scheduleManualReconnect();
    }
  };

  private onConnectError = (err: Error): void => {
    const { session } = this;
    // A refused handshake may mean the session ended (logged out elsewhere, expired).
    if (err.message === "unauthorized") {
      // Refused after this session was in: the server ended it (a ban, a removed account, an
      // expiry; a logout in another tab is told apart by the screen).
      if (this.closedByServer || this.hadConnection) {
        session.store.set({
          endedReason: "The server ended your session. Your account may have been banned or removed, or the session expired.",
        });
      }
      session.api.me().catch((e) => session.handleApiError(e));
    }
    // Refused by the server rather than a network failure: socket.io-client will not retry.
    if (!session.socket.active) this.scheduleManualReconnect();
    if (session.store.state.status === "connecting" || session.store.state.status === "connected") {
      session.store.set({ status: "reconnecting" });
    }
  };

  private onReconnectAttempt = (attempt: number): void => {
    this.session.store.set({
      status: this.browserOffline() || attempt > OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting",
    });
  };

  private scheduleManualReconnect(): void {
    const { session } = this;
    const attempt = this.manualAttempts++;
    if (attempt > OFFLINE_AFTER_ATTEMPTS) session.store.set({ status: "offline" });
    session.later("reconnect", reconnectDelay(attempt), () => {
      if (!session.socket.connected) session.socket.connect();
    });
  }

  private onBrowserOnline = (): void => {
    const { socket, store } = this.session;
    if (!socket.connected) {
      store.set({ status: "reconnecting" });
      if (!socket.active) socket.connect();
    }
  };

  private onVisibility = (): void => {
    if (document.visibilityState === "visible") {
      this.parts.reading.viewed();
      void this.parts.reading.refreshAll();
    }
  };

  private onBrowserOffline = (): void => {
    if (!this.session.socket.connected) this.session.store.set({ status: "offline" });
  };

  private browserOffline(): boolean {
    return typeof navigator !== "undefined" && navigator.onLine === false;
  }
}
