/**
 * Unread counts of the channels and direct messages in the sidebar: the server's counts from
 * `GET /api/channels` and `GET /api/dms`, moved between fetches by `mention` events (counted
 * at once) and `channel.read` (this user read the channel in some tab). Pure.
 */
import type { Channel, DirectMessage } from "./types";

export interface Unread {
  unread: number;
  mentions: number;
}

/** A channel's counts; none while it is open (it is being read). */
export function unreadOf(channel: Channel | undefined, current: string | null): Unread {
  if (!channel || channel.name === current) return { unread: 0, mentions: 0 };
  return { unread: Math.max(0, channel.unread ?? 0), mentions: Math.max(0, channel.unread_mentions ?? 0) };
}

/** The user read the channel up to `readSeq`: its counts are cleared and its position only moves forward. */
export function markRead(channel: Channel, readSeq: number): Channel {
  const read = Math.max(channel.read_seq ?? 0, readSeq);
  if (read === channel.read_seq && !channel.unread && !channel.unread_mentions) return channel;
  return { ...channel, read_seq: read, unread: 0, unread_mentions: 0 };
}

/** A message mentioning the user arrived in a channel they are not reading: one more of each. */
export function countMention(channel: Channel, seq: number): Channel {
  if (channel.read_seq !== undefined && seq <= channel.read_seq) return channel;
  return { ...channel, unread: (channel.unread ?? 0) + 1, unread_mentions: (channel.unread_mentions ?? 0) + 1 };
}

/** Applies `fn` to the named channel of a list (the list itself when it is not there or unchanged). */
export function updateNamed<T extends Channel>(list: T[], name: string, fn: (c: T) => T): T[] {
  let changed = false;
  const next = list.map((c) => {
    if (c.name !== name) return c;
    const after = fn(c);
    if (after !== c) changed = true;
    return after;
  });
  return changed ? next : list;
}

/** The same for the direct-message list, whose channels sit inside each entry. */
export function updateDm(list: DirectMessage[], name: string, fn: (c: Channel) => Channel): DirectMessage[] {
  let changed = false;
  const next = list.map((d) => {
    if (d.channel.name !== name) return d;
    const channel = fn(d.channel);
    if (channel === d.channel) return d;
    changed = true;
    return { ...d, channel };
  });
  return changed ? next : list;
}

/**
 * The direct messages with `userId`'s presence as a `user.status` event just told it: online,
 * or offline and last seen `at`. A list fetched a moment before the person signed in (or out)
 * is put right at once, instead of at its next refresh.
 */
export function withPresence(list: DirectMessage[], userId: string, online: boolean, at: Date): DirectMessage[] {
  let changed = false;
  const next = list.map((d) => {
    if (d.user.id !== userId || d.user.online === online) return d;
    changed = true;
    const user = online ? { id: d.user.id, username: d.user.username, online } : { ...d.user, online, last_seen: at.toISOString() };
    return { ...d, user };
  });
  return changed ? next : list;
}

/**
 * Fresh counts from the server, except where this tab knows better: a read position further on
 * (read since the request went out) keeps its cleared counts.
 */
export function mergeFetched<T extends Channel>(fresh: T[], held: readonly Channel[]): T[] {
  const byName = new Map(held.map((c) => [c.name, c]));
  return fresh.map((c) => {
    const old = byName.get(c.name);
    if (old?.read_seq !== undefined && (c.read_seq === undefined || old.read_seq > c.read_seq)) {
      return { ...c, read_seq: old.read_seq, unread: 0, unread_mentions: 0 };
    }
    return c;
  });
}

/**
 * The list with a channel just created (`channel.created`) in its place by name; a channel
 * already listed stays as it is (it carries the reader's counts).
 */
export function withCreated<T extends Channel>(list: readonly T[], created: T): T[] {
  if (list.some((c) => c.name === created.name)) return [...list];
  return [...list, created].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** What a sidebar entry says to a screen reader: its name, then its counts. */
export function unreadLabel(name: string, u: Unread): string {
  const parts = [name];
  if (u.unread > 0) parts.push(`${u.unread >= 1000 ? "999+" : u.unread} unread`);
  if (u.mentions > 0) parts.push(`${u.mentions} ${u.mentions === 1 ? "mention" : "mentions"}`);
  return parts.join(", ");
}

/** A count as a badge shows it. */
export const badgeCount = (n: number): string => (n > 99 ? "99+" : String(n));

/** "last seen just now", "… 5 minutes ago", "… yesterday at 14:05", "… on March 3". */
export function lastSeenLabel(lastSeen: string | undefined, now: Date): string {
  if (!lastSeen) return "offline";
  const at = new Date(lastSeen);
  const secs = Math.max(0, (now.getTime() - at.getTime()) / 1000);
  if (!Number.isFinite(secs)) return "offline";
  if (secs < 60) return "last seen just now";
  if (secs < 3600) {
    const m = Math.floor(secs / 60);
    return `last seen ${m} ${m === 1 ? "minute" : "minutes"} ago`;
  }
  if (secs < 86400) {
    const h = Math.floor(secs / 3600);
    return `last seen ${h} ${h === 1 ? "hour" : "hours"} ago`;
  }
  const days = Math.floor(secs / 86400);
  if (days < 7) return `last seen ${days} ${days === 1 ? "day" : "days"} ago`;
  return `last seen on ${at.toLocaleDateString("en-US", { month: "long", day: "numeric", ...(at.getFullYear() === now.getFullYear() ? {} : { year: "numeric" }) })}`;
}
