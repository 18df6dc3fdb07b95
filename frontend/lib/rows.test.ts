import { describe, expect, it } from "vitest";
import { buildRows, dayLabel, timeLabel } from "./rows";
import { newOutgoing } from "./timeline";
import type { Message } from "./types";

const ME = "me";
let n = 0;
function msg(at: Date, sender = "bob"): Message {
  n += 1;
  return {
    id: `id-${n}`,
    channel: "general",
    seq: n,
    text: `m${n}`,
    sender,
    sender_id: `uid-${sender}`,
    client_message_id: `cid-${n}`,
    createdAt: at.toISOString(),
  };
}

describe("day separators", () => {
  const now = new Date(2025, 5, 18, 15, 0);

  it("names today, yesterday and older days", () => {
    expect(dayLabel(new Date(2025, 5, 18, 0, 5), now)).toBe("Today");
    expect(dayLabel(new Date(2025, 5, 17, 23, 59), now)).toBe("Yesterday");
    expect(dayLabel(new Date(2025, 5, 12, 9, 0), now)).toBe("Thursday, June 12");
    expect(dayLabel(new Date(2024, 11, 31, 9, 0), now)).toBe("Tuesday, December 31, 2024");
  });

  it("puts one separator before the first message of each local day", () => {
    const rows = buildRows(
      [
        msg(new Date(2025, 5, 17, 22, 0)),
        msg(new Date(2025, 5, 17, 23, 0)),
        msg(new Date(2025, 5, 18, 0, 30)),
      ],
      [],
      ME,
      now,
    );
    expect(rows.map((r) => (r.kind === "day" ? r.label : r.kind))).toEqual([
      "Yesterday",
      "message",
      "message",
      "Today",
      "message",
    ]);
  });

  it("shows the sender once for a run of messages, again after a pause or another sender", () => {
    const rows = buildRows(
      [
        msg(new Date(2025, 5, 18, 10, 0), "bob"),
        msg(new Date(2025, 5, 18, 10, 1), "bob"),
        msg(new Date(2025, 5, 18, 10, 2), "alice"),
        msg(new Date(2025, 5, 18, 10, 30), "alice"),
      ],
      [],
      ME,
      now,
    );
    const headers = rows.flatMap((r) => (r.kind === "message" ? [r.showHeader] : []));
    expect(headers).toEqual([true, false, true, true]);
  });

  it("places pending messages after stored ones, under today's separator", () => {
    const rows = buildRows(
      [msg(new Date(2025, 5, 17, 12, 0))],
      [newOutgoing("general", "hello", "cid-x", new Date(2025, 5, 18, 14, 59), true)],
      ME,
      now,
    );
    expect(rows.map((r) => r.kind)).toEqual(["day", "message", "day", "outgoing"]);
    expect(rows[2]).toMatchObject({ label: "Today" });
  });

  it("formats times as hours and minutes", () => {
    expect(timeLabel(new Date(2025, 0, 1, 9, 5))).toBe("09:05");
  });
});
