/**
 * Changes to stored messages (edits, deletes, reactions) and the per-channel change cursor.
 * Every change carries the channel's change number: a message keeps the newest state by that
 * number, whichever way it arrived (a live event, a history page, a sync, an ack). Pure, so
 * the rules are tested without a server.
 */
import type { Message, MessageChange, Reaction, ReplyQuote } from "./types";

/** At most this many changes are kept for messages that have not arrived yet. */
const PENDING_CAP = 200;
/** A reply quotes this many characters of the message it answers. */
const QUOTE_CHARS = 200;

/** The change number a message was last changed at (0 when never). */
export const changeOf = (m: { change?: number }): number => m.change ?? 0;

/** Whether `incoming` is a newer state of the same message than `held`. */
export function isNewerState(incoming: Message, held: Message): boolean {
  return changeOf(incoming) > changeOf(held);
}

/**
 * The reactions after a `message.reactions` broadcast: its counts, with the reader's own marks
 * kept (the broadcast carries counts only) and set for the emoji when the reader is who acted.
 */
export function mergeReactions(
  previous: readonly Reaction[] | undefined,
  counts: readonly { emoji: string; count: number }[],
  actor: { userId: string; emoji: string; added: boolean },
  meId: string,
): Reaction[] {
  const mine = new Set((previous ?? []).filter((r) => r.me).map((r) => r.emoji));
  if (actor.userId === meId) {
    if (actor.added) mine.add(actor.emoji);
    else mine.delete(actor.emoji);
  }
  return counts
    .filter((r) => r.count > 0)
    .map((r) => (mine.has(r.emoji) ? { emoji: r.emoji, count: r.count, me: true } : { emoji: r.emoji, count: r.count }));
}

/** What a reader's toggle of an emoji does to the reactions at once (before the server answers). */
export function toggleReaction(previous: readonly Reaction[] | undefined, emoji: string): { reactions: Reaction[]; added: boolean } {
  const list = [...(previous ?? [])];
  const i = list.findIndex((r) => r.emoji === emoji);
  const held = i >= 0 ? list[i]! : undefined;
  if (held?.me) {
    if (held.count <= 1) list.splice(i, 1);
    else list[i] = { emoji, count: held.count - 1 };
    return { reactions: list, added: false };
  }
  if (held) list[i] = { emoji, count: held.count + 1, me: true };
  else list.push({ emoji, count: 1, me: true });
  return { reactions: list, added: true };
}

/** A message with one change applied; the message itself when it already holds that state or a newer one. */
export function applyChange(message: Message, change: MessageChange, meId: string): Message {
  if (message.id !== change.id || changeOf(message) >= change.change) return message;
  switch (change.kind) {
    case "updated":
      return { ...message, text: change.text, edited_at: change.edited_at ?? undefined, change: change.change };
    case "deleted": {
      const rest: Message = { ...message, text: "", deleted: true, change: change.change };
      delete rest.file;
      delete rest.reactions;
      delete rest.mentions;
      return rest;
    }
    case "reactions": {
      const reactions = mergeReactions(message.reactions, change.reactions, { userId: change.user_id, emoji: change.emoji, added: change.added }, meId);
      const next: Message = { ...message, change: change.change };
      if (reactions.length) next.reactions = reactions;
      else delete next.reactions;
      return next;
    }
  }
}

/** The quote of a message, as a reply to it shows it. */
export function quoteOf(message: Message): ReplyQuote {
  if (message.deleted) return { id: message.id, seq: message.seq, deleted: true };
  const chars = [...message.text];
  const text = chars.length > QUOTE_CHARS ? `${chars.slice(0, QUOTE_CHARS).join("")}…` : message.text;
  return { id: message.id, seq: message.seq, sender: message.sender, text };
}

/**
 * Applies a change to a channel's held messages: to the message it is about, and to the quotes
 * of the replies to it (an edit or a delete). `held` says whether the message was there.
 */
export function applyChangeToList(
  messages: readonly Message[],
  change: MessageChange,
  meId: string,
): { messages: Message[]; held: boolean } {
  let held = false;
  let changed = false;
  let target: Message | undefined;
  const next = messages.map((m) => {
    if (m.id !== change.id) return m;
    held = true;
    const after = applyChange(m, change, meId);
    if (after !== m) changed = true;
    target = after;
    return after;
  });
  if (!held) return { messages: messages as Message[], held };
  if (change.kind !== "reactions" && target) {
    const quote = quoteOf(target);
    for (let i = 0; i < next.length; i++) {
      const m = next[i]!;
      if (m.reply_to?.id === change.id && !m.reply_to.deleted) {
        next[i] = { ...m, reply_to: quote };
        changed = true;
      }
    }
  }
  return { messages: changed ? next : (messages as Message[]), held };
}

/**
 * Changes held for messages not here yet (a change may overtake its message's `message.new`),
 * plus one; the oldest are dropped beyond a cap.
 */
export function holdPending(pending: readonly MessageChange[], change: MessageChange): MessageChange[] {
  const next = [...pending, change];
  return next.length > PENDING_CAP ? next.slice(next.length - PENDING_CAP) : next;
}

/**
 * Applies the held changes whose messages have now arrived; the ones still waiting stay, except
 * those for messages older than everything held (a history page shows their current state).
 */
export function applyPending(
  messages: readonly Message[],
  pending: readonly MessageChange[],
  meId: string,
): { messages: Message[]; pending: MessageChange[] } {
  if (pending.length === 0) return { messages: messages as Message[], pending: pending as MessageChange[] };
  let list = messages as Message[];
  const rest: MessageChange[] = [];
  const oldest = messages[0]?.seq ?? 0;
  for (const change of [...pending].sort((a, b) => a.change - b.change)) {
    const result = applyChangeToList(list, change, meId);
    if (result.held) list = result.messages;
    else if (change.seq > oldest || messages.length === 0) rest.push(change);
  }
  return { messages: list, pending: rest.length === pending.length ? (pending as MessageChange[]) : rest };
}

/**
 * The change cursor after a live change numbered `change`: the highest change applied with no
 * gap before it. One past the cursor moves it; more than one past is a gap (some change was
 * missed: sync from the cursor); an unknown cursor (null) stays unknown until history or a
 * sync gives one.
 */
export function advanceCursor(cursor: number | null, change: number): { cursor: number | null; gap: boolean } {
  if (cursor === null || change <= cursor) return { cursor, gap: false };
  if (change === cursor + 1) return { cursor: change, gap: false };
  return { cursor, gap: true };
}

/** The cursor from an answer that reports one (history's `X-Last-Change`, a sync's `last_change`): only raised. */
export function raiseCursor(cursor: number | null, reported: unknown): number | null {
  if (typeof reported !== "number" || !Number.isSafeInteger(reported) || reported < 0) return cursor;
  return cursor === null || reported > cursor ? reported : cursor;
}

/** A change broadcast, checked and tagged with its kind; null when it is not one. */
export function readChange(kind: MessageChange["kind"], e: unknown): MessageChange | null {
  if (!e || typeof e !== "object") return null;
  const x = e as Record<string, unknown>;
  if (typeof x.channel !== "string" || typeof x.id !== "string" || typeof x.seq !== "number" || typeof x.change !== "number") return null;
  if (kind === "updated" && typeof x.text !== "string") return null;
  if (kind === "reactions" && !Array.isArray(x.reactions)) return null;
  return { ...(x as object), kind } as MessageChange;
}

// ---------------------------------------------------------------------------------------------
// Mentions

const NAME_CHARS = /[A-Za-z0-9_.-]/;

/**
 * The text cut into plain runs and `@name` mentions (as the server reads them: an `@` at the
 * start or after a character that cannot be in a username; a trailing `.` or `-` is punctuation).
 */
export function splitMentions(text: string): { text: string; mention?: string }[] {
  const parts: { text: string; mention?: string }[] = [];
  const re = /@([A-Za-z0-9_.-]+)/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const before = m.index > 0 ? text[m.index - 1]! : "";
    if (before && NAME_CHARS.test(before)) continue;
    const name = m[1]!.replace(/[.-]+$/, "");
    if (name.length < 3 || name.length > 32) continue;
    if (m.index > last) parts.push({ text: text.slice(last, m.index) });
    parts.push({ text: `@${name}`, mention: name });
    last = m.index + 1 + name.length;
    re.lastIndex = last;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

/** Whether a message mentions this user (by the server's list, or by `@name` in its text). */
export function mentionsUser(message: Message, user: { id: string; username: string }): boolean {
  if (message.deleted || message.sender_id === user.id) return false;
  if (message.mentions?.includes(user.id)) return true;
  const me = user.username.toLowerCase();
  return splitMentions(message.text).some((p) => p.mention?.toLowerCase() === me);
}
