/**
 * A channel's timeline: the stored messages, kept sorted and unique by `seq`, and the messages
 * this tab is still sending. Everything here is pure so that the merge and state rules can be
 * tested without a server.
 */
import type { Ack, ApiErrorBody, FileRef, Message, ReplyQuote } from "./types";

/** Longest message text the server accepts, in Unicode scalar values (after trimming). */
export const MAX_MESSAGE_CHARS = 4000;

/**
 * Merges `incoming` into `existing`: sorted by seq, one message per seq and per id. A message
 * already held is replaced only by a newer state of it (a higher change number).
 */
export function mergeMessages(existing: readonly Message[], incoming: readonly Message[]): Message[] {
  if (incoming.length === 0) return existing as Message[];
  const last = existing[existing.length - 1];
  // The live stream: messages newer than everything held, already in order.
  if (last && isAscending(incoming) && incoming[0]!.seq > last.seq) {
    return [...existing, ...incoming];
  }
  const bySeq = new Map<number, Message>();
  for (const m of existing) bySeq.set(m.seq, m);
  const ids = new Set(existing.map((m) => m.id));
  for (const m of incoming) {
    const held = bySeq.get(m.seq);
    if (held && held.id === m.id) {
      if ((m.change ?? 0) > (held.change ?? 0)) bySeq.set(m.seq, m);
      continue;
    }
    if (!held && ids.has(m.id)) continue;
    bySeq.set(m.seq, m);
    ids.add(m.id);
  }
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

function isAscending(list: readonly Message[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i]!.seq <= list[i - 1]!.seq) return false;
  return true;
}

/** The highest seq held, 0 when none. */
export function highestSeq(messages: readonly Message[]): number {
  return messages.length === 0 ? 0 : messages[messages.length - 1]!.seq;
}

/**
 * The seq up to which the held messages are complete: the end of the unbroken run that starts
 * at the oldest message held. A sync from here fills every hole above it. Seqs below
 * `firstSeq` (the oldest the channel still keeps) are gone for good, so a hole there is no
 * break in the run.
 */
export function contiguousSeq(messages: readonly Message[], firstSeq = 1): number {
  if (messages.length === 0) return 0;
  let end = messages[0]!.seq;
  for (let i = 1; i < messages.length; i++) {
    const seq = messages[i]!.seq;
    if (seq !== end + 1 && seq > firstSeq) break;
    end = seq;
  }
  return end;
}

/**
 * Whether a live message shows that some were missed: seqs are gap-free per channel, so a
 * message more than one past the highest held means the ones between were dropped, unless
 * they are below `firstSeq` (removed by retention, nothing to fetch).
 */
export function revealsGap(messages: readonly Message[], incoming: Message, firstSeq = 1): boolean {
  return incoming.seq > Math.max(highestSeq(messages), firstSeq - 1) + 1;
}

/**
 * Whether older history may exist below the oldest message held after loading `page`: not
 * after a short page, nor once the page reaches `firstSeq`.
 */
export function hasOlderAfterPage(page: readonly Message[], limit: number, firstSeq = 1): boolean {
  return page.length >= limit && (page[0]?.seq ?? 1) > Math.max(1, firstSeq);
}

/**
 * The oldest seq a channel keeps, from an answer that may carry it: only ever raised (it
 * grows as retention removes messages; an older answer must not lower it).
 */
export function raiseFirstSeq(current: number, reported: unknown): number {
  return typeof reported === "number" && Number.isSafeInteger(reported) && reported > current ? reported : current;
}

// ---------------------------------------------------------------------------------------------
// Outgoing messages

/**
 * - `sending`: emitted, waiting for the ack;
 * - `queued`: waiting to be sent by itself (offline, or rate limited until the block ends);
 * - `failed`: refused or unanswered; the person may retry it.
 */
export type OutgoingStatus = "sending" | "queued" | "failed";

export interface Outgoing {
  client_message_id: string;
  channel: string;
  text: string;
  /** When it was written, for its place among day separators. */
  createdAt: string;
  status: OutgoingStatus;
  /** Why it failed, in words, when `status` is `failed`. */
  error?: string;
  /** An uploaded file it carries (as the upload answered, so it shows before it is stored). */
  file?: FileRef;
  /** The message it answers, quoted. */
  reply_to?: ReplyQuote;
}

export function newOutgoing(
  channel: string,
  text: string,
  clientMessageId: string,
  now: Date,
  canSendNow: boolean,
  file?: FileRef,
  replyTo?: ReplyQuote,
): Outgoing {
  return {
    client_message_id: clientMessageId,
    channel,
    text,
    createdAt: now.toISOString(),
    status: canSendNow ? "sending" : "queued",
    ...(file ? { file } : {}),
    ...(replyTo ? { reply_to: replyTo } : {}),
  };
}

/**
 * The text a message with a file is sent with: what was written, or the file's name when
 * nothing was (the server requires text).
 */
export function textWithFile(text: string, file?: FileRef): string {
  return text.trim() || file?.name.trim() || "";
}

export function setStatus(
  list: readonly Outgoing[],
  clientMessageId: string,
  status: OutgoingStatus,
  error?: string,
): Outgoing[] {
  return list.map((o) =>
    o.client_message_id === clientMessageId
      ? { ...o, status, error: status === "failed" ? error : undefined }
      : o,
  );
}

/** Drops the outgoing messages that the stored `messages` (from this user) confirm. */
export function settleOutgoing(
  list: readonly Outgoing[],
  messages: readonly Message[],
  userId: string,
): Outgoing[] {
  if (list.length === 0) return list as Outgoing[];
  const stored = new Set(
    messages.filter((m) => m.sender_id === userId).map((m) => m.client_message_id),
  );
  const rest = list.filter((o) => !stored.has(o.client_message_id));
  return rest.length === list.length ? (list as Outgoing[]) : rest;
}

/** What to do with an outgoing message once `message.send` has answered (or not). */
export type SendOutcome =
  | { kind: "confirmed"; message: Message }
  | { kind: "rate_limited"; retryAfterMs: number }
  | { kind: "requeue" }
  | { kind: "failed"; error: string };

/**
 * Reads a `message.send` ack. `ack` is undefined when no answer came in time; `connected` says
 * whether the socket is still up (an unanswered send on a dropped connection is sent again
 * after reconnecting, with the same client_message_id, so it cannot be stored twice).
 */
export function sendOutcome(
  ack: Ack<{ message: Message; duplicate: boolean }> | undefined,
  connected: boolean,
): SendOutcome {
  if (!ack) {
    return connected
      ? { kind: "failed", error: "No answer from the server." }
      : { kind: "requeue" };
  }
  if (ack.ok) return { kind: "confirmed", message: ack.message };
  return errorOutcome(ack.error);
}

function errorOutcome(error: ApiErrorBody): SendOutcome {
  switch (error.code) {
    case "rate_limited":
      return { kind: "rate_limited", retryAfterMs: Math.max(0, error.retry_after_ms ?? 1000) };
    case "too_long":
      return { kind: "failed", error: "Too long: at most 4,000 characters." };
    case "unavailable":
      return { kind: "failed", error: "The server could not store it." };
    case "not_in_channel":
      return { kind: "failed", error: "You are not in this channel any more." };
    case "forbidden":
      return { kind: "failed", error: "You have no access to this channel." };
    case "not_found":
      return { kind: "failed", error: "This channel no longer exists." };
    case "invalid_payload":
      if (error.errors?.some((e) => e.field === "reply_to")) {
        return { kind: "failed", error: "The message you replied to is no longer there." };
      }
      return { kind: "failed", error: error.message || "Not sent." };
    default:
      return { kind: "failed", error: error.message || "Not sent." };
  }
}

/** The composer's view of a draft: its length as the server counts it, and the limit. */
export function draftLength(text: string): { count: number; showCounter: boolean; over: boolean } {
  const count = [...text.trim()].length;
  return {
    count,
    showCounter: count >= MAX_MESSAGE_CHARS - 500,
    over: count > MAX_MESSAGE_CHARS,
  };
}
