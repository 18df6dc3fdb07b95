/**
 * What the message pane shows, row by row: day separators, stored messages (grouped when one
 * sender writes several in a row) and this tab's outgoing messages at the bottom.
 */
import type { Outgoing } from "./timeline";
import type { Message } from "./types";

/** Messages from one sender closer together than this share one header. */
const GROUP_WINDOW_MS = 5 * 60 * 1000;

export type Row =
  | { kind: "day"; key: string; label: string }
  | { kind: "message"; key: string; message: Message; showHeader: boolean }
  | { kind: "outgoing"; key: string; outgoing: Outgoing; showHeader: boolean };

/** The local calendar day of a timestamp, as `YYYY-MM-DD`. */
export function dayKey(date: Date): string {
  const y = date.getFullYear();
  const m = String(date.getMonth() + 1).padStart(2, "0");
  const d = String(date.getDate()).padStart(2, "0");
  return `${y}-${m}-${d}`;
}

/** "Today", "Yesterday", "Monday, March 3", or with the year when it is not this year's. */
export function dayLabel(date: Date, now: Date): string {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const day = new Date(date.getFullYear(), date.getMonth(), date.getDate());
  const days = Math.round((today.getTime() - day.getTime()) / 86_400_000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return date.toLocaleDateString("en-US", {
    weekday: "long",
    month: "long",
    day: "numeric",
    ...(date.getFullYear() === now.getFullYear() ? {} : { year: "numeric" }),
  });
}

/** A message's time of day, e.g. "14:05". */
export function timeLabel(date: Date): string {
  const h = String(date.getHours()).padStart(2, "0");
  const m = String(date.getMinutes()).padStart(2, "0");
  return `${h}:${m}`;
}

export function buildRows(
  messages: readonly Message[],
  outgoing: readonly Outgoing[],
  userId: string,
  now: Date,
): Row[] {
  const rows: Row[] = [];
  let lastDay = "";
  let lastSender: string | null = null;
  let lastTime = 0;

  const place = (at: Date, sender: string | null): boolean => {
    const day = dayKey(at);
    if (day !== lastDay) {
      rows.push({ kind: "day", key: `day-${day}`, label: dayLabel(at, now) });
      lastDay = day;
      lastSender = null;
    }
    const showHeader =
      sender === null || sender !== lastSender || at.getTime() - lastTime > GROUP_WINDOW_MS;
    lastSender = sender;
    lastTime = at.getTime();
    return showHeader;
  };

  for (const message of messages) {
    const at = new Date(message.createdAt);
    const showHeader = place(at, message.sender_id ?? `name:${message.sender}`);
    rows.push({ kind: "message", key: message.id, message, showHeader });
  }
  for (const o of outgoing) {
    const at = new Date(o.createdAt);
    const showHeader = place(at, userId);
    rows.push({ kind: "outgoing", key: `out-${o.client_message_id}`, outgoing: o, showHeader });
  }
  return rows;
}
