/**
 * The channel list and which channel the socket is in: joining (with a password when private),
 * catching a channel up once joined, falling back to the default one, and creating channels.
 * Joining is where the other parts meet, so this sits above sync, outbox, presence and typing.
 */
import { ApiError, fieldSentence } from "../api";
import type { Channel } from "../types";
import { mergeFetched } from "../unread";
import type { Actions } from "./actions";
import type { Outbox } from "./outbox";
import type { Presence } from "./presence";
import type { Reading } from "./reading";
import type { Session } from "./session";
import type { Sync } from "./sync";
import type { TypingIndicators } from "./typing";

/** A channel returned to after a while is synced up to this many pages, else reloaded. */
const SWITCH_SYNC_PAGES = 5;

export type JoinReason = "first" | "switch" | "reconnect";

export type CreateChannelResult = { ok: true } | { ok: false; fieldErrors: Record<string, string>; message: string };

export interface ChannelsParts {
  sync: Sync;
  outbox: Outbox;
  presence: Presence;
  typing: TypingIndicators;
  reading: Reading;
  actions: Actions;
  /** Called when the open channel changes (to keep it in the address bar). */
  onChannelChange?: (name: string) => void;
}

export class Channels {
  private readonly session: Session;
  private readonly parts: ChannelsParts;
  /** Only the latest join may act on its answer. */
  private joinSeq = 0;

  constructor(session: Session, parts: ChannelsParts) {
    this.session = session;
    this.parts = parts;
  }

  async refresh(): Promise<void> {
    try {
      const channels = mergeFetched(await this.session.api.channels(), this.session.store.state.channels);
      this.session.store.set({ channels });
      for (const c of channels) {
        if (c.first_seq !== undefined && this.session.store.state.byChannel[c.name]) {
          this.parts.sync.learnFirstSeq(c.name, c.first_seq);
        }
      }
    } catch (e) {
      this.session.handleApiError(e);
    }
  }

  /** Opens a channel (a private one may ask for its password). */
  select(name: string): void {
    if (name === this.session.store.state.current && this.session.joined === name) {
      if (name.startsWith("dm-")) void this.parts.reading.refreshPartner(name);
      return;
    }
    void this.join(name, undefined, "switch");
  }

  submitPassword(channel: string, password: string): void {
    void this.join(channel, password, "switch");
  }

  cancelPassword(): void {
    this.session.store.set({ passwordPrompt: null });
    // Nothing open yet (the address named a private channel): open the default one.
    if (this.session.store.state.current === null) void this.join("general", undefined, "first");
  }

  async join(name: string, password: string | undefined, why: JoinReason): Promise<void> {
    const { session } = this;
    const { store } = session;
    const { sync, outbox, presence, typing, reading, onChannelChange } = this.parts;
    const seq = ++this.joinSeq;
    if (why === "switch" && store.state.current && store.state.current !== name) typing.stop();
    store.set({ joining: name });
    const ack = await session.emitAck<{ channel: Channel; online: number }>(
      "channel.join",
      password === undefined ? { channel: name } : { channel: name, password },
    );
    if (seq !== this.joinSeq || session.stopped) return;
    if (!ack) {
      store.set({ joining: null });
      // Unanswered because the connection dropped: the next connect joins again.
      if (session.socket.connected) session.notify(`Could not open #${name}. Try again.`);
      return;
    }
    if (!ack.ok) {
      store.set({ joining: null });
      const code = ack.error.code;
      if (code === "forbidden") {
        store.set({
          passwordPrompt: {
            channel: name,
            error: password === undefined ? null : "Wrong password. Try again.",
          },
        });
      } else if (code === "not_found" || code === "invalid_payload") {
        session.notify(`#${name} does not exist.`);
        void this.refresh();
      } else {
        session.notify(ack.error.message || `Could not open #${name}.`);
      }
      // Nothing open yet (the first channel failed): fall back to the default one.
      if (store.state.current === null && name !== "general" && code !== "forbidden") {
        void this.join("general", undefined, "first");
      }
      return;
    }

    const previous = store.state.current;
    const switched = previous !== name;
    if (switched && previous) reading.leaving(previous);
    session.joined = name;
    store.set({
      current: name,
      joining: null,
      passwordPrompt: null,
      onlineCount: ack.online,
      typing: switched ? [] : store.state.typing,
      online: switched ? [] : store.state.online,
    });
    if (switched) onChannelChange?.(name);
    const dm = store.state.dms.some((d) => d.channel.name === name) || ack.channel?.dm === true || name.startsWith("dm-");
    if (dm) {
      if (!store.state.dms.some((d) => d.channel.name === name)) void reading.refreshDms();
      void reading.refreshPartner(name);
    } else {
      if (!store.state.channels.some((c) => c.name === name)) void this.refresh();
      const owns = ack.channel?.created_by !== undefined && ack.channel.created_by === session.user.id;
      store.set({ owned: { ...store.state.owned, [name]: owns } });
    }
    void presence.fetchOnline(name);
    sync.learnFirstSeq(name, ack.channel?.first_seq);

    const held = store.channel(name);
    if (!held.loaded) {
      await sync.loadLatest(name);
    } else {
      const complete = await sync.sync(name, why === "reconnect" ? 50 : SWITCH_SYNC_PAGES);
      if (!complete && session.socket.connected) {
        // Away too long to catch up page by page: start again from the newest page.
        store.updateChannel(name, (c) => ({ ...c, messages: [], loaded: false, hasOlder: false, lastChange: null, pendingChanges: [] }));
        await sync.loadLatest(name);
      }
    }
    void outbox.pump();
    reading.viewed();
  }

  /**
   * The connection came back with its session recovered: the socket is in `name` again and the
   * server replays what it missed (no join, no sync). Presence is read again; what waits to be
   * sent goes out.
   */
  recovered(name: string): void {
    const { store } = this.session;
    const { outbox, presence, reading } = this.parts;
    store.set({ current: name, joining: null });
    void presence.fetchOnline(name);
    void outbox.pump();
    reading.viewed();
  }

  async create(name: string, description: string, password: string): Promise<CreateChannelResult> {
    try {
      const channel = await this.session.api.createChannel(name, description, password);
      await this.refresh();
      void this.join(channel.name, undefined, "switch");
      return { ok: true };
    } catch (e) {
      const message = this.session.handleApiError(e);
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
}
