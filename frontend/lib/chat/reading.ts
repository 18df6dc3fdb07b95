/**
 * What the user has read and what waits for them: read positions (`channel.read`, sent as the
 * open channel is viewed and heard from every tab), unread counts in the sidebar (the server's,
 * moved at once by `mention` events), direct-message channels and the people in them, and the
 * notice when the user is removed from a channel.
 */
import { countMention, markRead, mergeFetched, updateDm, updateNamed, withCreated } from "../unread";
import type { ChannelCreatedEvent, ChannelReadEvent, ChannelRemovedEvent, DirectMessage, MentionEvent } from "../types";
import { ApiError, fieldSentence } from "../api";
import type { Session } from "./session";

/** A read position goes out this long after the view last changed. */
const READ_DEBOUNCE_MS = 400;
/** After a mention, the counts are fetched again (to be exact) this much later. */
const RECOUNT_DELAY_MS = 1500;

export type OpenDmResult = { ok: true; name: string } | { ok: false; error: string };

export class Reading {
  private readonly session: Session;
  /** Opens a channel (the channels part, set once both exist). */
  openChannel: (name: string) => void = () => {};
  /** Fetches the channel list again (the channels part). */
  refreshChannels: () => Promise<void> = async () => {};

  constructor(session: Session) {
    this.session = session;
  }

  /** Whether the person can see the page (a hidden tab reads nothing). */
  private visible(): boolean {
    return typeof document === "undefined" || document.visibilityState !== "hidden";
  }

  /** The held read position of a channel or direct message (undefined when none is known). */
  private readSeq(name: string): number | undefined {
    const { channels, dms } = this.session.store.state;
    return channels.find((c) => c.name === name)?.read_seq ?? dms.find((d) => d.channel.name === name)?.channel.read_seq;
  }

  /**
   * The open channel is on screen: once the view settles, its read position moves to the
   * newest message held (when that is further than the one known).
   */
  viewed(): void {
    this.session.later("read", READ_DEBOUNCE_MS, () => void this.sendRead());
  }

  /**
   * The user leaves the open channel for another: what they saw of it counts as read now,
   * rather than after the pause (which would find the next channel open).
   */
  leaving(name: string): void {
    this.session.cancel("read");
    void this.sendRead(name);
  }

  private async sendRead(channel?: string): Promise<void> {
    const { store, socket } = this.session;
    const name = channel ?? store.state.current;
    if (!name || !socket.connected || !this.visible()) return;
    const c = store.channel(name);
    const newest = c.messages[c.messages.length - 1]?.seq;
    if (!c.loaded || newest === undefined) return;
    const known = this.readSeq(name);
    if (known !== undefined && known >= newest) return;
    const ack = await this.session.emitAck<{ read_seq: number }>("channel.read", { channel: name, seq: newest });
    if (ack?.ok && typeof ack.read_seq === "number") this.applyRead(name, ack.read_seq);
  }

  private applyRead(name: string, readSeq: number): void {
    const { store } = this.session;
    const channels = updateNamed(store.state.channels, name, (c) => markRead(c, readSeq));
    const dms = updateDm(store.state.dms, name, (c) => markRead(c, readSeq));
    if (channels !== store.state.channels || dms !== store.state.dms) store.set({ channels, dms });
  }

  /** This user read a channel (in this tab or another): its badge clears everywhere. */
  onChannelRead = (e: ChannelReadEvent): void => {
    if (!e || typeof e.channel !== "string" || typeof e.read_seq !== "number") return;
    this.applyRead(e.channel, e.read_seq);
  };

  /** A message mentions this user (or is a direct message to them), wherever it was sent. */
  onMention = (e: MentionEvent): void => {
    if (!e || typeof e.channel !== "string" || !e.message) return;
    const { store } = this.session;
    const name = e.channel;
    if (name === store.state.current && this.visible()) return;
    const seq = e.message.seq;
    const channels = updateNamed(store.state.channels, name, (c) => countMention(c, seq));
    const dms = updateDm(store.state.dms, name, (c) => countMention(c, seq));
    if (channels !== store.state.channels || dms !== store.state.dms) store.set({ channels, dms });
    // A direct message from someone new, or a channel not listed yet: fetch the lists, which
    // also makes the counts exact.
    this.session.later("recount", RECOUNT_DELAY_MS, () => void this.refreshAll());
  };

  /** Another tab of this user's, or a moderator, took them out of a channel. */
  onChannelRemoved = (e: ChannelRemovedEvent): void => {
    if (!e || typeof e.channel !== "string") return;
    const { store } = this.session;
    store.set({ removedFrom: e.channel });
    if (store.state.current === e.channel) {
      this.session.joined = null;
      this.openChannel("general");
    }
    void this.refreshAll();
  };

  /** Another user created a channel: it joins the list at once. */
  onChannelCreated = (e: ChannelCreatedEvent): void => {
    if (!e || typeof e.channel?.name !== "string") return;
    const { store } = this.session;
    store.set({ channels: withCreated(store.state.channels, e.channel) });
  };

  dismissRemoved(): void {
    this.session.store.set({ removedFrom: null });
  }

  async refreshAll(): Promise<void> {
    await Promise.all([this.refreshChannels(), this.refreshDms()]);
  }

  async refreshDms(): Promise<void> {
    const { store } = this.session;
    try {
      const fresh = await this.session.api.dms();
      const held = store.state.dms.map((d) => d.channel);
      const merged = mergeFetched(
        fresh.map((d) => d.channel),
        held,
      );
      store.set({ dms: fresh.map((d, i) => ({ ...d, channel: merged[i]! })) });
    } catch (e) {
      this.session.handleApiError(e);
    }
  }

  /** Opens the direct-message channel with a user (starting it when new). */
  async openDm(username: string): Promise<OpenDmResult> {
    const { store } = this.session;
    try {
      const dm = await this.session.api.openDm(username);
      const rest = store.state.dms.filter((d) => d.channel.name !== dm.channel.name);
      store.set({ dms: [dm, ...rest] });
      this.openChannel(dm.channel.name);
      return { ok: true, name: dm.channel.name };
    } catch (e) {
      const message = this.session.handleApiError(e);
      if (e instanceof ApiError) {
        if (e.status === 404) return { ok: false, error: `There is no user named ${username.trim()}.` };
        if (e.status === 403) return { ok: false, error: "Direct messages with guests are turned off here." };
        const field = e.fieldErrors.username;
        if (field) return { ok: false, error: fieldSentence("Username", field) };
        if (e.status === 400) return { ok: false, error: "You can’t message yourself." };
      }
      return { ok: false, error: message };
    }
  }

  /** Fetches whether the other person of a direct message is online, or when they were last seen. */
  async refreshPartner(name: string): Promise<void> {
    const { store } = this.session;
    const dm = store.state.dms.find((d) => d.channel.name === name);
    if (!dm) return;
    try {
      const user = await this.session.api.user(dm.user.username);
      const dms = store.state.dms.map((d): DirectMessage => (d.channel.name === name ? { ...d, user } : d));
      store.set({ dms });
    } catch (e) {
      this.session.handleApiError(e);
    }
  }
}
