import { describe, expect, it } from "vitest";
import {
  advanceCursor,
  applyChange,
  applyChangeToList,
  applyPending,
  holdPending,
  mentionsUser,
  mergeReactions,
  quoteOf,
  raiseCursor,
  readChange,
  splitMentions,
  toggleReaction,
} from "./changes";
import { mergeMessages } from "./timeline";
import type { Message, MessageChange } from "./types";

const ME = "u-me";

function msg(seq: number, extra: Partial<Message> = {}): Message {
  return {
    id: `id-${seq}`,
    channel: "general",
    seq,
    text: `text ${seq}`,
    sender: "other",
    sender_id: "u-other",
    client_message_id: `c-${seq}`,
    createdAt: "2025-01-01T12:00:00Z",
    ...extra,
  };
}

const edit = (seq: number, change: number, text: string): MessageChange => ({
  kind: "updated",
  channel: "general",
  id: `id-${seq}`,
  seq,
  change,
  text,
  edited_at: "2025-01-01T12:05:00Z",
});
const del = (seq: number, change: number): MessageChange => ({ kind: "deleted", channel: "general", id: `id-${seq}`, seq, change });
const react = (seq: number, change: number, counts: { emoji: string; count: number }[], user: string, emoji: string, added: boolean): MessageChange => ({
  kind: "reactions",
  channel: "general",
  id: `id-${seq}`,
  seq,
  change,
  reactions: counts,
  user_id: user,
  emoji,
  added,
});

describe("applying changes", () => {
  it("an edit replaces the text and marks it edited; an older or repeated change is ignored", () => {
    const m = applyChange(msg(1), edit(1, 3, "new"), ME);
    expect(m).toMatchObject({ text: "new", edited_at: "2025-01-01T12:05:00Z", change: 3 });
    expect(applyChange(m, edit(1, 2, "older"), ME)).toBe(m);
    expect(applyChange(m, edit(1, 3, "again"), ME)).toBe(m);
  });

  it("an edit whose edited_at the server sent as null leaves the message without one", () => {
    const m = applyChange(msg(1), { ...edit(1, 3, "new"), edited_at: null } as MessageChange, ME);
    expect(m.text).toBe("new");
    expect(m.edited_at).toBeUndefined();
  });

  it("a delete leaves a tombstone that keeps its seq, without text, file or reactions", () => {
    const m = msg(4, { file: { url: "/uploads/a", name: "a.png", type: "image/png" }, reactions: [{ emoji: "👍", count: 1 }], mentions: [ME] });
    const t = applyChange(m, del(4, 9), ME);
    expect(t).toMatchObject({ seq: 4, text: "", deleted: true, change: 9 });
    expect(t.file).toBeUndefined();
    expect(t.reactions).toBeUndefined();
    expect(mentionsUser(t, { id: ME, username: "me" })).toBe(false);
  });

  it("updates the quotes of the replies to an edited or deleted message", () => {
    const list = [msg(1), msg(2, { reply_to: { id: "id-1", seq: 1, sender: "other", text: "text 1" } })];
    const edited = applyChangeToList(list, edit(1, 1, "fixed"), ME);
    expect(edited.held).toBe(true);
    expect(edited.messages[1]!.reply_to).toEqual({ id: "id-1", seq: 1, sender: "other", text: "fixed" });
    const deleted = applyChangeToList(edited.messages, del(1, 2), ME);
    expect(deleted.messages[1]!.reply_to).toEqual({ id: "id-1", seq: 1, deleted: true });
  });

  it("a change to a message not held says so and changes nothing", () => {
    const list = [msg(1)];
    const r = applyChangeToList(list, edit(5, 1, "x"), ME);
    expect(r).toEqual({ messages: list, held: false });
  });

  it("a change that overtook its message is applied when the message arrives, keeping the newer state", () => {
    let pending = holdPending([], edit(3, 7, "edited before it arrived"));
    pending = holdPending(pending, edit(9, 8, "still on its way"));
    const merged = mergeMessages([msg(1), msg(2)], [msg(3)]);
    const after = applyPending(merged, pending, ME);
    expect(after.messages[2]).toMatchObject({ text: "edited before it arrived", change: 7 });
    expect(after.pending.map((c) => c.id)).toEqual(["id-9"]);
  });

  it("a merge keeps the newer state of a message by change number", () => {
    const held = [msg(1, { text: "edited", change: 5 })];
    expect(mergeMessages(held, [msg(1, { text: "stale", change: 4 })])[0]!.text).toBe("edited");
    expect(mergeMessages(held, [msg(1)])[0]!.text).toBe("edited");
    expect(mergeMessages(held, [msg(1, { text: "newer", change: 6 })])[0]!.text).toBe("newer");
  });

  it("reads broadcasts and refuses what is not one", () => {
    expect(readChange("deleted", { channel: "general", id: "x", seq: 1, change: 2 })).toMatchObject({ kind: "deleted", change: 2 });
    expect(readChange("updated", { channel: "general", id: "x", seq: 1, change: 2 })).toBeNull();
    expect(readChange("reactions", null)).toBeNull();
  });

  it("quotes the first 200 characters", () => {
    const q = quoteOf(msg(1, { text: "y".repeat(250) }));
    expect([...q.text!].length).toBe(201);
    expect(q.text!.endsWith("…")).toBe(true);
  });
});

describe("the change cursor", () => {
  it("moves by one, ignores what it already covers, and calls a jump a gap", () => {
    expect(advanceCursor(4, 5)).toEqual({ cursor: 5, gap: false });
    expect(advanceCursor(4, 3)).toEqual({ cursor: 4, gap: false });
    expect(advanceCursor(4, 4)).toEqual({ cursor: 4, gap: false });
    expect(advanceCursor(4, 7)).toEqual({ cursor: 4, gap: true });
    expect(advanceCursor(0, 1)).toEqual({ cursor: 1, gap: false });
  });

  it("stays unknown until history or a sync tells it", () => {
    expect(advanceCursor(null, 9)).toEqual({ cursor: null, gap: false });
    expect(raiseCursor(null, 0)).toBe(0);
    expect(raiseCursor(null, 12)).toBe(12);
  });

  it("is only raised by answers", () => {
    expect(raiseCursor(10, 8)).toBe(10);
    expect(raiseCursor(10, 11)).toBe(11);
    expect(raiseCursor(10, "11")).toBe(10);
    expect(raiseCursor(10, -1)).toBe(10);
  });
});

describe("reactions", () => {
  it("takes the broadcast's counts and keeps the reader's own marks", () => {
    const before = [
      { emoji: "👍", count: 1, me: true },
      { emoji: "🎉", count: 1 },
    ];
    const after = mergeReactions(
      before,
      [
        { emoji: "👍", count: 2 },
        { emoji: "🎉", count: 1 },
      ],
      { userId: "u-other", emoji: "👍", added: true },
      ME,
    );
    expect(after).toEqual([
      { emoji: "👍", count: 2, me: true },
      { emoji: "🎉", count: 1 },
    ]);
  });

  it("marks or unmarks the reader's own when they are who acted (another tab)", () => {
    const added = mergeReactions([], [{ emoji: "❤️", count: 1 }], { userId: ME, emoji: "❤️", added: true }, ME);
    expect(added).toEqual([{ emoji: "❤️", count: 1, me: true }]);
    const removed = mergeReactions(added, [], { userId: ME, emoji: "❤️", added: false }, ME);
    expect(removed).toEqual([]);
  });

  it("a reactions change through the list keeps the reader's marks of other emoji", () => {
    const list = [msg(1, { reactions: [{ emoji: "👍", count: 1, me: true }] })];
    const r = applyChangeToList(list, react(1, 1, [{ emoji: "👍", count: 1 }, { emoji: "👀", count: 1 }], "u-other", "👀", true), ME);
    expect(r.messages[0]!.reactions).toEqual([
      { emoji: "👍", count: 1, me: true },
      { emoji: "👀", count: 1 },
    ]);
    const cleared = applyChangeToList(r.messages, react(1, 2, [], "u-x", "👍", false), ME);
    expect(cleared.messages[0]!.reactions).toBeUndefined();
  });

  it("a toggle adds the reader's reaction or takes it back", () => {
    expect(toggleReaction([{ emoji: "👍", count: 2 }], "👍")).toEqual({ reactions: [{ emoji: "👍", count: 3, me: true }], added: true });
    expect(toggleReaction([{ emoji: "👍", count: 1, me: true }], "👍")).toEqual({ reactions: [], added: false });
    expect(toggleReaction(undefined, "🎉")).toEqual({ reactions: [{ emoji: "🎉", count: 1, me: true }], added: true });
  });
});

describe("mentions", () => {
  it("splits @names as the server reads them", () => {
    expect(splitMentions("hi @ann_1, and @bob.")).toEqual([
      { text: "hi " },
      { text: "@ann_1", mention: "ann_1" },
      { text: ", and " },
      { text: "@bob", mention: "bob" },
      { text: "." },
    ]);
    expect(splitMentions("mail me@example.com")).toEqual([{ text: "mail me@example.com" }]);
    expect(splitMentions("@al is too short")).toEqual([{ text: "@al is too short" }]);
  });

  it("a message mentions the reader by the server's list or by name, never their own", () => {
    const me = { id: ME, username: "Me_Too" };
    expect(mentionsUser(msg(1, { mentions: [ME] }), me)).toBe(true);
    expect(mentionsUser(msg(1, { text: "ping @me_too" }), me)).toBe(true);
    expect(mentionsUser(msg(1, { text: "ping @me_too2" }), me)).toBe(false);
    expect(mentionsUser(msg(1, { text: "ping @me_too", sender_id: ME }), me)).toBe(false);
  });
});
