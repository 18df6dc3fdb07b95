/**
 * The state React renders and the subscribers it notifies. React reads it through
 * `subscribe`/`getSnapshot` (useSyncExternalStore); every change replaces the snapshot, so
 * renders see consistent state. It knows nothing of sockets or requests, so every other part
 * of the session can write to it without depending on one another.
 */
import type { Outgoing } from "../timeline";
import type { Channel, DirectMessage, Message, MessageChange, OnlineUser } from "../types";

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
  /** The oldest seq the channel still keeps (1 until the server says otherwise). */
  firstSeq: number;
  /** The highest change number applied with none missing before it (null: not known yet). */
  lastChange: number | null;
  /** Changes to messages that have not arrived yet (a change may overtake its message). */
  pendingChanges: MessageChange[];
}

export interface Typist {
  userId: string;
  username: string;
  expires: number;
}

export interface ChatState {
  status: ConnectionStatus;
  /**
   * The server is moving this tab to another instance (`instance.draining`): its connection
   * closes next and comes back by itself. True until it does (or for a while at most).
   */
  moving: boolean;
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
  /** The user's direct-message channels, the most recently active first. */
  dms: DirectMessage[];
  /** The user is an administrator (the moderation log answered them). */
  isAdmin: boolean;
  /** The channels the user was found to own (may delete any message, remove members). */
  owned: Record<string, boolean>;
  /** A channel the user was removed from, until the notice is dismissed. */
  removedFrom: string | null;
  /** Why the server ended the session (a ban, a removed account), shown on the sign-in screen. */
  endedReason: string | null;
}

const emptyChannel = (): ChannelState => ({
  messages: [],
  outgoing: [],
  loaded: false,
  hasOlder: false,
  loadingOlder: false,
  error: null,
  firstSeq: 1,
  lastChange: null,
  pendingChanges: [],
});

export class ChatStore {
  private snapshot: ChatState = {
    status: "connecting",
    moving: false,
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
    dms: [],
    isAdmin: false,
    owned: {},
    removedFrom: null,
    endedReason: null,
  };
  private readonly listeners = new Set<() => void>();

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ChatState => this.snapshot;

  get state(): ChatState {
    return this.snapshot;
  }

  set(patch: Partial<ChatState>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const l of this.listeners) l();
  }

  updateChannel(name: string, fn: (c: ChannelState) => ChannelState): void {
    const prev = this.snapshot.byChannel[name] ?? emptyChannel();
    const next = fn(prev);
    if (next === prev && this.snapshot.byChannel[name]) return;
    this.set({ byChannel: { ...this.snapshot.byChannel, [name]: next } });
  }

  /** A channel's state; one never touched reads as empty and not loaded. */
  channel(name: string): ChannelState {
    return this.snapshot.byChannel[name] ?? emptyChannel();
  }
}
