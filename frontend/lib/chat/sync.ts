/**
 * The stored messages this tab holds for each channel: history pages, live `message.new`, and
 * `messages.sync` to fill whatever was missed (a gap in the live stream, time away from a
 * channel, a reconnect). Anything stored also settles this tab's outgoing copy of it.
 *
 * Changes to stored messages (edits, deletes, reactions) arrive numbered per channel: each is
 * applied when newer than the message's state, the highest number applied without a gap is the
 * channel's cursor, and a gap (or time away) is caught up by `messages.sync` from that cursor.
 *
 * Retention may have removed a channel's oldest messages: every answer that says which seq is
 * the oldest kept (`first_seq`) is remembered, and seqs below it are never fetched as missing.
 */
import {
  contiguousSeq,
  hasOlderAfterPage,
  highestSeq,
  mergeMessages,
  raiseFirstSeq,
  revealsGap,
  settleOutgoing,
} from "../timeline";
import { advanceCursor, applyChangeToList, applyPending, holdPending, raiseCursor } from "../changes";
import type { Message, MessageChange } from "../types";
import type { Session } from "./session";

export const PAGE_SIZE = 50;

interface SyncAnswer {
  messages: Message[];
  has_more: boolean;
  first_seq?: number;
  changes?: Message[];
  changes_has_more?: boolean;
  last_change?: number;
}
const SYNC_PAGE = 200;

export class Sync {
  private readonly session: Session;
  /** Told of each live message once it is held. */
  private readonly onLive: (message: Message) => void;
  private readonly syncing = new Set<string>();
  private readonly syncAgain = new Set<string>();

  constructor(session: Session, onLive: (message: Message) => void) {
    this.session = session;
    this.onLive = onLive;
  }

  async loadLatest(name: string): Promise<void> {
    const { store } = this.session;
    store.updateChannel(name, (c) => ({ ...c, error: null }));
    try {
      const page = await this.session.api.history(name, { limit: PAGE_SIZE });
      store.updateChannel(name, (c) => {
        const messages = mergeMessages(c.messages, page.messages);
        const firstSeq = raiseFirstSeq(c.firstSeq, page.firstSeq);
        return {
          ...c,
          messages,
          outgoing: settleOutgoing(c.outgoing, messages, this.session.user.id),
          loaded: true,
          hasOlder: hasOlderAfterPage(page.messages, PAGE_SIZE, firstSeq),
          error: null,
          firstSeq,
          lastChange: raiseCursor(c.lastChange, page.lastChange),
        };
      });
      this.settlePending(name);
      const c = store.channel(name);
      // Live messages that arrived during the load may sit above a hole.
      if (contiguousSeq(c.messages, c.firstSeq) < highestSeq(c.messages)) void this.sync(name, 50);
    } catch (e) {
      const message = this.session.handleApiError(e);
      store.updateChannel(name, (c) => ({ ...c, error: message }));
    }
  }

  /** Loads the page just older than the oldest message held. */
  async loadOlder(): Promise<void> {
    const { store } = this.session;
    const name = store.state.current;
    if (!name) return;
    const c = store.channel(name);
    if (!c.loaded || !c.hasOlder || c.loadingOlder || c.messages.length === 0) return;
    const before = c.messages[0]!.seq;
    store.updateChannel(name, (x) => ({ ...x, loadingOlder: true }));
    try {
      const page = await this.session.api.history(name, { before, limit: PAGE_SIZE });
      store.updateChannel(name, (x) => {
        const firstSeq = raiseFirstSeq(x.firstSeq, page.firstSeq);
        return {
          ...x,
          messages: mergeMessages(x.messages, page.messages),
          hasOlder: hasOlderAfterPage(page.messages, PAGE_SIZE, firstSeq),
          loadingOlder: false,
          firstSeq,
        };
      });
    } catch (e) {
      this.session.handleApiError(e);
      store.updateChannel(name, (x) => ({ ...x, loadingOlder: false }));
      this.session.notify("Could not load older messages.");
    }
  }

  retryLoad(): void {
    const name = this.session.store.state.current;
    if (name) void this.loadLatest(name);
  }

  /**
   * Fetches what was missed with `messages.sync`, from the end of the unbroken run of held
   * messages, page by page while `has_more`. Returns false when it stopped at `maxPages`
   * with more to come. One sync per channel at a time; a request during one runs again after.
   */
  async sync(name: string, maxPages: number): Promise<boolean> {
    if (this.syncing.has(name)) {
      this.syncAgain.add(name);
      return true;
    }
    this.syncing.add(name);
    let complete = true;
    try {
      do {
        this.syncAgain.delete(name);
        const held = this.session.store.channel(name);
        let after = contiguousSeq(held.messages, held.firstSeq);
        complete = false;
        for (let page = 0; page < maxPages; page++) {
          const cursor = this.session.store.channel(name).lastChange;
          const ack = await this.session.emitAck<SyncAnswer>("messages.sync", {
            channel: name,
            after_seq: after,
            ...(cursor === null ? {} : { after_change: cursor }),
            limit: SYNC_PAGE,
          });
          if (!ack || !ack.ok) {
            complete = true; // nothing more to learn now; the next connect syncs again
            break;
          }
          this.learnFirstSeq(name, ack.first_seq);
          this.absorb(name, [...(ack.messages ?? []), ...(ack.changes ?? [])]);
          this.session.store.updateChannel(name, (c) => {
            const lastChange = raiseCursor(c.lastChange, ack.last_change);
            return lastChange === c.lastChange ? c : { ...c, lastChange };
          });
          const last = ack.messages?.[ack.messages.length - 1];
          if (last) after = last.seq;
          const moreMessages = Boolean(ack.has_more && last);
          if (!moreMessages && !ack.changes_has_more) {
            complete = true;
            break;
          }
        }
      } while (this.syncAgain.has(name) && !this.session.stopped);
    } finally {
      this.syncing.delete(name);
    }
    return complete;
  }

  /**
   * Remembers the oldest seq a channel keeps, as an answer reported it (ignored unless it is
   * a number above the one held). Once the oldest message held is that one, there is nothing
   * older to load.
   */
  learnFirstSeq(name: string, reported: unknown): void {
    this.session.store.updateChannel(name, (c) => {
      const firstSeq = raiseFirstSeq(c.firstSeq, reported);
      if (firstSeq === c.firstSeq) return c;
      const oldest = c.messages[0]?.seq;
      return { ...c, firstSeq, hasOlder: c.hasOlder && oldest !== undefined && oldest > firstSeq };
    });
  }

  /**
   * Merges stored messages into a channel (a newer state of one held replaces it), applies the
   * changes that were waiting for them, and settles the outgoing ones they confirm.
   */
  absorb(name: string, messages: Message[]): void {
    if (messages.length === 0) return;
    this.session.store.updateChannel(name, (c) => {
      const merged = mergeMessages(c.messages, messages);
      const settled = applyPending(merged, c.pendingChanges, this.session.user.id);
      return {
        ...c,
        messages: settled.messages,
        pendingChanges: settled.pending,
        outgoing: settleOutgoing(c.outgoing, messages, this.session.user.id),
      };
    });
  }

  private settlePending(name: string): void {
    this.session.store.updateChannel(name, (c) => {
      if (c.pendingChanges.length === 0) return c;
      const settled = applyPending(c.messages, c.pendingChanges, this.session.user.id);
      return { ...c, messages: settled.messages, pendingChanges: settled.pending };
    });
  }

  /**
   * A live change to a message (`message.updated`, `message.deleted`, `message.reactions`):
   * applied when newer than what is held, kept for later when its message has not arrived, and
   * a gap in the change numbers is caught up with `messages.sync`.
   */
  onChange = (change: MessageChange | null): void => {
    if (!change) return;
    const name = change.channel;
    let gap = false;
    const meId = this.session.user.id;
    this.session.store.updateChannel(name, (c) => {
      const applied = applyChangeToList(c.messages, change, meId);
      const step = advanceCursor(c.lastChange, change.change);
      gap = c.loaded && step.gap;
      // Not held: its message.new is still on its way (newer than all held), or it is older
      // than what was loaded (history will show its current state then).
      const newest = c.messages[c.messages.length - 1]?.seq ?? 0;
      const pendingChanges = applied.held || (change.seq <= newest && c.loaded) ? c.pendingChanges : holdPending(c.pendingChanges, change);
      if (applied.messages === c.messages && step.cursor === c.lastChange && pendingChanges === c.pendingChanges) return c;
      return { ...c, messages: applied.messages, lastChange: step.cursor, pendingChanges };
    });
    if (gap) void this.sync(name, 50);
  };

  onMessage = (message: Message): void => {
    if (!message || typeof message.seq !== "number" || typeof message.channel !== "string") return;
    const name = message.channel;
    const before = this.session.store.channel(name);
    const gap = before.loaded && revealsGap(before.messages, message, before.firstSeq);
    this.absorb(name, [message]);
    this.onLive(message);
    if (gap) void this.sync(name, 50);
  };
}
