import { describe, expect, it } from "vitest";
import {
  contiguousSeq,
  draftLength,
  hasOlderAfterPage,
  mergeMessages,
  newOutgoing,
  raiseFirstSeq,
  revealsGap,
  sendOutcome,
  setStatus,
  settleOutgoing,
} from "./timeline";
import type { Message } from "./types";

const ME = "00000000-0000-4000-8000-000000000001";
const BOB = "00000000-0000-4000-8000-000000000002";

function msg(seq: number, extra: Partial<Message> = {}): Message {
  return {
    id: `id-${seq}`,
    channel: "general",
    seq,
    text: `message ${seq}`,
    sender: "bob",
    sender_id: BOB,
    client_message_id: `cid-${seq}`,
    createdAt: new Date(Date.UTC(2025, 0, 1, 12, 0, seq)).toISOString(),
    ...extra,
  };
}
const seqs = (list: Message[]) => list.map((m) => m.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => msg(from + i));

describe("mergeMessages", () => {
  it("appends live messages in order", () => {
    expect(seqs(mergeMessages(range(1, 3), [msg(4), msg(5)]))).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps one copy of a message that arrives twice (ack, broadcast and sync)", () => {
    const held = mergeMessages(range(1, 3), [msg(4)]);
    const again = mergeMessages(held, [msg(4), msg(3)]);
    expect(seqs(again)).toEqual([1, 2, 3, 4]);
    const fromSync = mergeMessages(again, range(2, 6));
    expect(seqs(fromSync)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("prepends an older page and fills a hole, sorted by seq", () => {
    expect(seqs(mergeMessages(range(51, 100), range(1, 50)))).toEqual(seqs(range(1, 100)));
    expect(seqs(mergeMessages([msg(1), msg(2), msg(5)], [msg(4), msg(3)]))).toEqual([1, 2, 3, 4, 5]);
  });

  it("returns the same array when nothing comes in", () => {
    const held = range(1, 3);
    expect(mergeMessages(held, [])).toBe(held);
  });
});

describe("gaps", () => {
  it("sees a gap when a live message skips seqs", () => {
    expect(revealsGap(range(1, 10), msg(11))).toBe(false);
    expect(revealsGap(range(1, 10), msg(13))).toBe(true);
    // A duplicate or an older message is no gap.
    expect(revealsGap(range(1, 10), msg(7))).toBe(false);
  });

  it("in an empty channel, anything after seq 1 means messages were missed", () => {
    expect(revealsGap([], msg(1))).toBe(false);
    expect(revealsGap([], msg(4))).toBe(true);
  });

  it("syncs from the end of the unbroken run, so every hole is filled", () => {
    expect(contiguousSeq([])).toBe(0);
    expect(contiguousSeq(range(51, 100))).toBe(100);
    const holed = mergeMessages(range(51, 60), [msg(63), msg(64)]);
    expect(contiguousSeq(holed)).toBe(60);
  });

  it("knows when older history exists below a page", () => {
    expect(hasOlderAfterPage(range(51, 100), 50)).toBe(true);
    expect(hasOlderAfterPage(range(1, 50), 50)).toBe(false);
    expect(hasOlderAfterPage(range(1, 20), 50)).toBe(false);
  });
});

describe("retention (first_seq)", () => {
  it("sees no gap below the oldest seq the channel keeps", () => {
    // Messages 1..80 were removed: a first live message at 81 misses nothing.
    expect(revealsGap([], msg(81), 81)).toBe(false);
    expect(revealsGap([], msg(82), 81)).toBe(true);
    // Held 1..50 from before; 51..80 are gone, 81 is the next one kept.
    expect(revealsGap(range(1, 50), msg(81), 81)).toBe(false);
    expect(revealsGap(range(1, 50), msg(83), 81)).toBe(true);
    expect(revealsGap(range(90, 95), msg(96), 81)).toBe(false);
  });

  it("runs the unbroken stretch across the removed seqs, so a sync does not ask for them again", () => {
    const held = [...range(1, 50), ...range(81, 100)];
    expect(contiguousSeq(held)).toBe(50);
    expect(contiguousSeq(held, 81)).toBe(100);
    // A hole above first_seq is still a hole.
    expect(contiguousSeq([...range(1, 50), ...range(90, 100)], 81)).toBe(50);
    expect(contiguousSeq([...range(81, 85), ...range(88, 90)], 81)).toBe(85);
  });

  it("has nothing older to load once a page reaches first_seq", () => {
    expect(hasOlderAfterPage(range(81, 130), 50, 81)).toBe(false);
    expect(hasOlderAfterPage(range(82, 131), 50, 81)).toBe(true);
    expect(hasOlderAfterPage(range(51, 100), 50, 1)).toBe(true);
  });

  it("only ever raises the first_seq it holds", () => {
    expect(raiseFirstSeq(1, 81)).toBe(81);
    expect(raiseFirstSeq(81, 40)).toBe(81);
    expect(raiseFirstSeq(81, undefined)).toBe(81);
    expect(raiseFirstSeq(1, "90")).toBe(1);
    expect(raiseFirstSeq(1, 1.5)).toBe(1);
  });
});

describe("outgoing messages", () => {
  const now = new Date("2025-01-01T12:00:00Z");

  it("is pending at once and keeps its client_message_id through failure and retry", () => {
    let list = [newOutgoing("general", "hello", "cid-a", now, true)];
    expect(list[0]!.status).toBe("sending");
    list = setStatus(list, "cid-a", "failed", "No answer from the server.");
    expect(list[0]).toMatchObject({ status: "failed", error: "No answer from the server.", client_message_id: "cid-a" });
    list = setStatus(list, "cid-a", "queued");
    expect(list[0]).toMatchObject({ status: "queued", client_message_id: "cid-a" });
    expect(list[0]!.error).toBeUndefined();
  });

  it("is settled by the stored copy from this user only", () => {
    const list = [
      newOutgoing("general", "one", "cid-1", now, true),
      newOutgoing("general", "two", "cid-2", now, true),
    ];
    const stored = msg(9, { sender_id: ME, client_message_id: "cid-1" });
    const other = msg(10, { sender_id: BOB, client_message_id: "cid-2" });
    const rest = settleOutgoing(list, [stored, other], ME);
    expect(rest.map((o) => o.text)).toEqual(["two"]);
  });

  it("reads acks: confirmed, rate limited, re-sent after a drop, failed in words", () => {
    const message = msg(3, { sender_id: ME });
    expect(sendOutcome({ ok: true, message, duplicate: true }, true)).toEqual({ kind: "confirmed", message });
    expect(
      sendOutcome({ ok: false, error: { code: "rate_limited", message: "slow down", retry_after_ms: 27000 } }, true),
    ).toEqual({ kind: "rate_limited", retryAfterMs: 27000 });
    expect(sendOutcome(undefined, false)).toEqual({ kind: "requeue" });
    expect(sendOutcome(undefined, true)).toEqual({ kind: "failed", error: "No answer from the server." });
    const tooLong = sendOutcome({ ok: false, error: { code: "too_long", message: "text too long" } }, true);
    expect(tooLong.kind).toBe("failed");
    expect(tooLong.kind === "failed" && tooLong.error).toMatch(/4,000/);
  });
});

describe("draftLength", () => {
  it("shows the counter near the limit and flags a draft over it", () => {
    expect(draftLength("hi")).toEqual({ count: 2, showCounter: false, over: false });
    expect(draftLength("x".repeat(3600)).showCounter).toBe(true);
    expect(draftLength("x".repeat(4000)).over).toBe(false);
    expect(draftLength("x".repeat(4001)).over).toBe(true);
  });

  it("counts characters as the server does: trimmed, one per code point", () => {
    expect(draftLength("  hi  ").count).toBe(2);
    expect(draftLength("😀".repeat(4000)).over).toBe(false);
  });
});
